"""Corruption injectors for the fsck tests (e2fsprogs style: one small, named damage per
case).  Each takes a device image (a bytearray, changed in place) and returns a short
description of what it did.

Two families:
- byte damage at a structure's location: `damage(img, offset, length, how)` with how in
  zeroes / ones / bit (one flipped bit) / random; the locators below find superblocks,
  checkpoint slots, tree nodes and log unit summaries through the engine, not through
  fsck (fsck must not be tested with itself);
- semantic damage written with a valid commit (CRCs and hashes all correct): a wrong
  refcount, usage count, link count, a dangling entry, an unreachable inode, a leak."""
import random
import stat

from ..device import MemoryDevice
from ..engine import Engine, read_superblock
from ..format import constants as C
from ..format.calog import CALOG_ENTRY_SIZE, CALOG_HEADER_SIZE
from ..format.checkpoint import CHECKPOINT_SIZE, decode_checkpoint
from ..format.items import dirent_key, fs_key, pack_dirent, pack_inode, pack_snap, unpack_inode
from ..format.segment import SUMMARY_ENTRY_SIZE, SUMMARY_HEADER_SIZE, decode_summary
from ..format.superblock import SUPERBLOCK_SIZE, encode_superblock

HOWS = ("zeroes", "ones", "bit", "random")


def sample_image(size=8 << 20, *, segment_blocks=16, files=150, seed=0, compressible=False,
                 block_size=C.DEFAULT_BLOCK_SIZE):
    """A small populated file system: nested directories, files of one and several blocks
    (shared blocks included), hardlinks, xattrs, a symlink, an image "img" and further
    changes after it.  Returns the device bytes.  compressible: file contents are text
    (for images kept xz-compressed in the repository)."""
    from ..filesystem import FileSystem
    from ..mkfs.geometry import make_filesystem

    rnd = random.Random(seed)
    if compressible:
        rnd.randbytes = lambda n: (b"line %d of a text file\n" % rnd.randrange(1000) * (n // 20 + 1))[:n]
    dev = MemoryDevice(bytearray(size))
    engine = make_filesystem(dev, segment_blocks=segment_blocks, block_size=block_size)
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
    d = fs.mkdir(C.ROOT_INO, b"dir", 0o755).ino
    sub = fs.mkdir(d, b"sub", 0o750).ino
    big = fs.mknod(d, b"big", stat.S_IFREG | 0o644).ino
    fs.write(big, 0, b"B" * 4096 * 3 + rnd.randbytes(5000))
    fs.link(big, C.ROOT_INO, b"big-link")
    fs.link(big, sub, b"big-link2")
    fs.setxattr(big, b"user.note", b"hello")
    fs.symlink(C.ROOT_INO, b"sym", b"dir/big")
    fs.mknod(sub, b"fifo", stat.S_IFIFO | 0o600)
    for i in range(files):
        ino = fs.mknod(sub if i % 3 else d, b"file-%03d" % i, stat.S_IFREG | 0o644).ino
        fs.write(ino, 0, rnd.randbytes(rnd.choice((100, 2000, 6000))))
    engine.ca.force_merge = True     # a CA tree to damage, and a CA log over it from the next commit
    fs.commit(image=b"img")
    fs.write(big, 4096, rnd.randbytes(4096))
    fs.mkdir(C.ROOT_INO, b"after", 0o755)
    fs.commit()
    engine.log.close()
    return dev.data


# ---- byte damage -----------------------------------------------------------------------------
def damage(img, offset, length, how, seed=0):
    """Overwrite img[offset:offset+length]: zeroes, ones, one flipped bit, or random bytes."""
    rnd = random.Random(seed)
    if how == "zeroes":
        img[offset:offset + length] = bytes(length)
    elif how == "ones":
        img[offset:offset + length] = b"\xff" * length
    elif how == "bit":
        pos = offset + rnd.randrange(length)
        img[pos] ^= 1 << rnd.randrange(8)
    elif how == "random":
        new = rnd.randbytes(length)
        if new == bytes(img[offset:offset + length]):
            new = bytes(b ^ 0x5A for b in new)
        img[offset:offset + length] = new
    else:
        raise ValueError(f"unknown damage {how!r}")
    return f"{how} at bytes {offset}..{offset + length - 1}"


def superblock(img):
    """The primary superblock, or the mirror when the primary is already damaged."""
    return read_superblock(MemoryDevice(img, readonly=True))


def block_size(img):
    return superblock(img)["block_size"]


def open_image(img, readonly=False):
    return Engine.open(MemoryDevice(img, readonly=readonly))


# ---- locators ---------------------------------------------------------------------------------
def newest_slot(img):
    """Index of the slot holding the newest valid checkpoint."""
    bs = block_size(img)
    best = None
    for i, blockno in enumerate(C.CHECKPOINT_SLOTS):
        try:
            cp = decode_checkpoint(bytes(img[blockno * bs:(blockno + 1) * bs]))
        except Exception:
            continue
        if best is None or cp["seq"] > best[0]:
            best = (cp["seq"], i)
    return best[1]


def slot_offset(img, slot):
    return C.CHECKPOINT_SLOTS[slot] * block_size(img)


def mirror_offset(img):
    return superblock(img)["mirror_block"] * block_size(img)


def tree_nodes(img, kind, name=C.DEFAULT_TREE_NAME):
    """[(paddr, level, hash)] of the stored nodes of a tree (FS: the snapshot `name`),
    root first; paddr is where the node really is (the CA index for FS nodes)."""
    engine = open_image(img, readonly=True)
    try:
        tree = {C.TREE_CA: engine.ca_tree, C.TREE_SNAP: engine.snaps, C.TREE_USAGE: engine.usage,
                C.TREE_REMAP: engine.remap}.get(kind) or engine.tree(name)
        out = []
        for ptr, level, _keys, _vals in tree.walk_nodes():
            paddr = engine.ca.get(ptr[1])[0] if kind == C.TREE_FS else ptr[0]
            out.append((paddr, level, ptr[1]))
        return out
    finally:
        engine.log.close()


def node_offset(img, kind, index=0, *, level=None, name=C.DEFAULT_TREE_NAME):
    """Byte offset of one node (the index-th, optionally among those of one level)."""
    nodes = [n for n in tree_nodes(img, kind, name) if level is None or n[1] == level]
    return nodes[index % len(nodes)][0] * block_size(img)


def summary_offsets(img):
    """Byte offsets of the summaries of the committed log units in use, in device order."""
    engine = open_image(img, readonly=True)
    try:
        lg, bs = engine.log, engine.block_size
        out = []
        for s in range(lg.nsegs):
            if lg.state[s] == C.SEG_FREE:
                continue
            off = 0
            end = engine.cp["log_offset"] if s == engine.cp["log_segment"] else lg.seg_blocks
            while off + 1 < end:
                try:
                    unit = decode_summary(bytes(img[(lg.seg_start(s) + off) * bs:][:bs]))
                except Exception:
                    break
                if unit["unit_seq"] < lg.alloc_seq[s] or unit["segment"] != s:
                    break
                out.append(((lg.seg_start(s) + off) * bs, len(unit["entries"])))
                off += 1 + len(unit["entries"])
        return out
    finally:
        engine.log.close()


# ---- byte-damage injectors ----------------------------------------------------------------------
def corrupt_superblock(img, how, *, mirror=False, seed=0):
    off = mirror_offset(img) if mirror else 0
    return ("mirror " if mirror else "primary ") + damage(img, off, SUPERBLOCK_SIZE, how, seed)


def set_superblock_field(img, field, value, *, mirror=False):
    """A field changed with a valid CRC (damage only the cross-checks can see)."""
    sb = superblock(img)
    off = mirror_offset(img) if mirror else 0
    img[off:off + SUPERBLOCK_SIZE] = encode_superblock({**sb, field: value})
    return f"{'mirror' if mirror else 'primary'} superblock {field} = {value!r}"


def corrupt_checkpoint(img, slot, how, *, seed=0):
    """Damage the CRC-covered record of one slot (and its CRC)."""
    return f"slot {slot}: " + damage(img, slot_offset(img, slot), CHECKPOINT_SIZE - 4, how, seed)


def tear_checkpoint(img, slot):
    """A torn write: the slot's tail no longer repeats its sequence number."""
    off = slot_offset(img, slot) + block_size(img) - 8
    seq = int.from_bytes(img[off:off + 8], "little")
    img[off:off + 8] = (seq + 2).to_bytes(8, "little")
    return f"slot {slot}: tail says {seq + 2}"


def corrupt_node(img, kind, how, index=0, *, level=None, part="payload", name=C.DEFAULT_TREE_NAME, seed=0):
    """Damage one tree node: its header, its payload, or just its stored CRC."""
    off = node_offset(img, kind, index, level=level, name=name)
    if part == "header":
        return "node header: " + damage(img, off, 32, how, seed)
    if part == "crc":
        return "node crc: " + damage(img, off + 20, 4, how, seed)
    bs = block_size(img)
    used = 32 + int.from_bytes(img[off + 16:off + 20], "little")
    return "node payload: " + damage(img, off + 32, max(1, min(used, bs) - 32), how, seed)


def corrupt_calog(img, how, index=0, *, seed=0):
    """Damage the index-th block of the CA log chain (0 = the newest): header and entries."""
    engine = open_image(img, readonly=True)
    try:
        chain = list(engine.ca.chain)
    finally:
        engine.log.close()
    off = chain[index % len(chain)] * block_size(img)
    used = CALOG_HEADER_SIZE + CALOG_ENTRY_SIZE * int.from_bytes(img[off + 48:off + 52], "little")
    return f"CA log block {off // block_size(img)}: " + damage(img, off, used, how, seed)


def corrupt_summary(img, how, index=0, *, seed=0):
    """Damage the summary of the index-th log unit that holds live blocks."""
    bs = block_size(img)
    live = live_blocks(img)
    units = [(off, n) for off, n in summary_offsets(img) if any(off // bs + 1 + i in live for i in range(n))]
    off, count = units[index % len(units)]
    length = SUMMARY_HEADER_SIZE + count * SUMMARY_ENTRY_SIZE
    return f"summary at block {off // bs}: " + damage(img, off, length, how, seed)


def live_blocks(img):
    """paddrs of every live block: CA entries and system tree nodes (usage table included)."""
    engine = open_image(img, readonly=True)
    try:
        out = {engine.ca.get(bytes(h))[0] for h, _v in engine.ca.scan()}
        for tree in (engine.ca_tree, engine.snaps, engine.usage, engine.remap):
            out.update(ptr[0] for ptr, *_ in tree.walk_nodes())
        out.update(engine.ca.chain)
        return out
    finally:
        engine.log.close()


def summary_entry_prefix(img, index=0):
    """Change the hash prefix of the summary entry of the index-th live block and re-seal
    the summary CRC (a valid summary that describes the block wrongly)."""
    from ..format.checksum import crc32c
    from ..format.segment import CRC_OFFSET
    bs = block_size(img)
    live = live_blocks(img)
    hits = [(off, count, i) for off, count in summary_offsets(img) for i in range(count)
            if off // bs + 1 + i in live]
    off, count, entry = hits[index % len(hits)]
    pos = off + SUMMARY_HEADER_SIZE + entry * SUMMARY_ENTRY_SIZE + 4
    img[pos] ^= 0xFF
    end = off + SUMMARY_HEADER_SIZE + count * SUMMARY_ENTRY_SIZE
    body = bytearray(img[off:end])
    body[CRC_OFFSET:CRC_OFFSET + 4] = bytes(4)
    img[off + CRC_OFFSET:off + CRC_OFFSET + 4] = crc32c(bytes(body)).to_bytes(4, "little")
    return f"summary entry of block {off // bs + 1 + entry}: hash prefix changed, CRC resealed"


def data_block_offset(img, index=0):
    engine = open_image(img, readonly=True)
    try:
        data = sorted(e[0] for _h, e in _ca_entries(engine, C.BLOCK_DATA))
        return data[index % len(data)] * engine.block_size
    finally:
        engine.log.close()


def corrupt_data(img, how, index=0, *, seed=0):
    off = data_block_offset(img, index)
    return "data block: " + damage(img, off, block_size(img), how, seed)


# ---- semantic injectors (a valid commit that says something false) -------------------------------
class _Edit:
    """An engine on the image for one change and one commit."""

    def __init__(self, img):
        self.engine = open_image(img)

    def __enter__(self):
        return self.engine

    def __exit__(self, exc_type, *_):
        try:
            if exc_type is None:
                self.engine.commit()
        finally:
            self.engine.log.close()


def _ca_entries(engine, kind):
    out = []
    for h, _v in engine.ca.scan():
        e = engine.ca.get(bytes(h))
        if e[2] == kind:
            out.append((bytes(h), e))
    return out


def wrong_refcount(img, delta=1, kind=C.BLOCK_DATA, index=0):
    with _Edit(img) as engine:
        h, e = _ca_entries(engine, kind)[index]
        engine.ca.delta[h] = [e[0], e[1] + delta, e[2]]
    what = "data" if kind == C.BLOCK_DATA else "node"
    return f"{what} block {h.hex()[:16]}: refcount {e[1]} -> {e[1] + delta}"


def shared_address(img, index=0):
    """Point one data block's CA entry at another data block's address."""
    with _Edit(img) as engine:
        data = _ca_entries(engine, C.BLOCK_DATA)
        (h, e), (_, e2) = data[index % len(data)], data[(index + 1) % len(data)]
        engine.ca.delta[h] = [e2[0], e[1], e[2]]
    return f"data block {h.hex()[:16]}: CA entry moved from block {e[0]} to {e2[0]}"


def leak_block(img):
    """A data block with refcount 1 that nothing points at."""
    with _Edit(img) as engine:
        paddr, h = engine.store.put_data(b"leaked".ljust(engine.block_size, b"\0"))
        engine.ca.incref(h)
    return f"leaked data block {h.hex()[:16]} at {paddr}"


def wrong_usage(img, delta=1, segno=None):
    with _Edit(img) as engine:
        lg = engine.log
        s = int(segno if segno is not None else (lg.live > 0).nonzero()[0][0])
        lg.live[s] += delta
        lg.dirty.add(s)
    return f"segment {s}: live count off by {delta}"


def _tree(engine, name):
    tree = engine.tree(name)
    engine.open_trees[name] = tree      # images too: the commit stores the change
    return tree


def empty_tree(img, name=b"empty"):
    """A writable tree with nothing in it, not even a root directory."""
    with _Edit(img) as engine:
        engine.create_tree(name)
    return f"tree {name.decode()} without a root directory"


def dangling_dirent(img, name=C.DEFAULT_TREE_NAME, ino=999999):
    with _Edit(img) as engine:
        _tree(engine, name).put(dirent_key(C.ROOT_INO, b"ghost"), pack_dirent(ino, stat.S_IFREG >> 12))
    return f"entry /ghost -> missing inode {ino}"


def set_nlink(img, ino, nlink, name=C.DEFAULT_TREE_NAME):
    with _Edit(img) as engine:
        tree = _tree(engine, name)
        fields, inline = unpack_inode(tree.get(fs_key(ino, C.ITEM_INODE)))
        fields = list(fields)
        old, fields[3] = fields[3], nlink
        tree.put(fs_key(ino, C.ITEM_INODE), pack_inode(*fields, inline=inline))
    return f"inode {ino}: nlink {old} -> {nlink}"


def drop_dirent(img, parent, entry, name=C.DEFAULT_TREE_NAME):
    """Remove one directory entry and nothing else: its inode may become unreachable."""
    with _Edit(img) as engine:
        if not _tree(engine, name).delete(dirent_key(parent, entry)):
            raise KeyError(entry)
    return f"entry {entry!r} removed from directory {parent}"


def wrong_totals(img, name=b"img", bytes_delta=1, inodes_delta=-1):
    """Change the logical size and inode count an image's entry records (a valid commit)."""
    with _Edit(img) as engine:
        e = engine.snapshot(name)
        engine.snaps.put(name, pack_snap(e["kind"], e["created_ns"], e["root"], e["parent_root"],
                                         e["logical_bytes"] + bytes_delta, e["inodes"] + inodes_delta,
                                         e["parent_name"]))
    return f"image {name.decode()}: recorded size {bytes_delta:+d} bytes, {inodes_delta:+d} inodes"


def drop_inode(img, ino, name=C.DEFAULT_TREE_NAME):
    """Remove an inode item but keep its entries, xattrs and blocks."""
    with _Edit(img) as engine:
        _tree(engine, name).delete(fs_key(ino, C.ITEM_INODE))
    return f"inode {ino} item removed"


def bad_acl(img, ino=4, name=C.DEFAULT_TREE_NAME):
    """An access ACL xattr that is not a valid ACL (named user without a mask)."""
    from ..acl import ACCESS
    value = bytes.fromhex("02000000" "01000600ffffffff" "02000600e8030000" "04000400ffffffff" "20000400ffffffff")
    with _Edit(img) as engine:
        _tree(engine, name).put(fs_key(ino, C.ITEM_XATTR, ACCESS), value)
    return f"inode {ino}: invalid access ACL"


__all__ = [n for n in dir() if not n.startswith("_") and n not in ("random", "stat")]
