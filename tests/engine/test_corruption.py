"""A flipped bit in any block the file system uses is detected when that block is read
(CorruptError, EIO at the file level), and never comes back as data: reading everything
either fails with CorruptError or gives exactly a committed state.

Where it lands decides how it shows: a data block or an FS tree node fails the read; a
checkpoint slot makes the open fall back to the older checkpoint; the superblock makes it
use the mirror; a log unit summary fails its decode (and fsck); bits outside what a
checksum covers (a node's or a summary's unused tail) change nothing that is read."""
import errno
import random
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.cleaner import log_units
from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.errors import CorruptError, FsError
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.format.checkpoint import CRC_OFFSET as CP_CRC_OFFSET
from ctrfs.format.checkpoint import TAIL_SIZE
from ctrfs.format.calog import CALOG_ENTRY_SIZE, CALOG_HEADER_SIZE
from ctrfs.format.items import block_key, unpack_ca
from ctrfs.format.segment import SUMMARY_ENTRY_SIZE, SUMMARY_HEADER_SIZE, decode_summary
from ctrfs.format.superblock import SUPERBLOCK_SIZE, decode_superblock
from ctrfs.mkfs.geometry import make_filesystem

BS = 4096
DATA, NODE, SYSNODE, SUMMARY, CHECKPOINT, SUPER = "data", "node", "sysnode", "summary", "checkpoint", "superblock"


def snapshot_fs(engine):
    """Everything readable: {tree: {path: (mode, content, xattrs)}}, hardlinks by path."""
    out = {}
    for name, _e in engine.snapshots():
        fs = FileSystem(engine, name, writable=False)
        tree, stack = {}, [(b"/", C.ROOT_INO)]
        while stack:
            path, ino = stack.pop()
            ind = fs.getattr(ino)
            xattrs = tuple(sorted((n, fs.getxattr(ino, n)) for n in fs.listxattr(ino)))
            if stat.S_ISDIR(ind.mode):
                content = None
                for child, cino, _c in fs.readdir(ino):
                    stack.append((path.rstrip(b"/") + b"/" + child, cino))
            elif stat.S_ISLNK(ind.mode):
                content = fs.readlink(ino)
            else:
                content = fs.read(ino, 0, ind.size)
            tree[path] = (ind.mode, ind.nlink, content, xattrs)
        out[bytes(name)] = tree
    return out


class Image:
    """A small file system committed twice (seq 2 and 3), the content of each commit, and
    the blocks of every kind that the newest checkpoint uses."""

    def __init__(self):
        rnd = random.Random(5)
        dev = MemoryDevice(bytearray(4 << 20))
        engine = make_filesystem(dev, block_size=BS, segment_blocks=16)
        fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
        d = fs.mkdir(C.ROOT_INO, b"etc", 0o755).ino
        fs.setxattr(d, b"user.tag", b"etc-dir")
        small = fs.mknod(d, b"small", stat.S_IFREG | 0o644).ino
        fs.write(small, 0, b"inline content\n")
        big = fs.mknod(C.ROOT_INO, b"big", stat.S_IFREG | 0o644).ino
        fs.write(big, 0, rnd.randbytes(5 * BS + 77))
        fs.symlink(C.ROOT_INO, b"link", b"etc/small")
        fs.link(big, d, b"big-again")
        for i in range(40):          # enough entries for a two-level FS tree
            fs.write(fs.mknod(d, b"f%02d" % i, stat.S_IFREG | 0o600).ino, 0, rnd.randbytes(rnd.randrange(2000)))
        fs.commit()
        self.expected = {engine.seq: snapshot_fs(engine)}
        fs.write(big, 2 * BS, rnd.randbytes(BS))
        fs.commit(image=b"img")
        self.expected[engine.seq] = snapshot_fs(engine)
        self.seq = engine.seq
        engine.log.close()
        self.data = bytes(dev.data)
        self.blocks = self._blocks(Engine.open(MemoryDevice(bytearray(self.data), readonly=True)))

    def _blocks(self, engine):
        """[(kind, blockno, covered byte ranges)] of the newest checkpoint."""
        out = [(SUPER, 0, [(0, SUPERBLOCK_SIZE)])]
        slot = C.CHECKPOINT_SLOTS[self.seq % 2]
        out.append((CHECKPOINT, slot, [(0, CP_CRC_OFFSET + 4), (BS - TAIL_SIZE, BS)]))   # + the CRC itself
        view = {bytes(key): unpack_ca(val) for key, val in engine.ca_tree.scan()}
        view.update(engine.ca.logged)          # the CA log overlays the tree
        for paddr, _ref, kind in (e for e in view.values() if e is not None):
            if kind == C.BLOCK_DATA:
                out.append((DATA, paddr, [(0, BS)]))
            else:
                out.append((NODE, paddr, node_range(self.data, paddr)))
        for tree in (engine.ca_tree, engine.snaps, engine.usage, engine.remap):
            for ptr, *_ in tree.walk_nodes():
                out.append((SYSNODE, ptr[0], node_range(self.data, ptr[0])))
        for paddr in engine.ca.chain:
            count = int.from_bytes(self.data[paddr * BS + 48:paddr * BS + 52], "little")  # CalogHeader.count
            out.append((SYSNODE, paddr, [(0, CALOG_HEADER_SIZE + CALOG_ENTRY_SIZE * count)]))
        log = engine.log
        for segno in sorted({log.seg_of(b) for _k, b, _r in out if log.valid_paddr(b)}):
            for base, entries in log_units(engine.store, log, segno):
                out.append((SUMMARY, base - 1, [(0, SUMMARY_HEADER_SIZE + SUMMARY_ENTRY_SIZE * len(entries))]))
        return out


def node_range(data, paddr):
    payload = int.from_bytes(data[paddr * BS + 16:paddr * BS + 20], "little")   # NodeHeader.payload_len
    return [(0, C.NODE_HEADER_SIZE + payload)]


@pytest.fixture(scope="module")
def image():
    return Image()


def flipped(image, blockno, bit):
    buf = bytearray(image.data)
    buf[blockno * BS + bit // 8] ^= 1 << (bit % 8)
    return MemoryDevice(buf, readonly=True)


def read_everything(dev):
    """(seq opened, content) or the CorruptError / EIO that stopped it: every system
    tree, every file system tree, every file."""
    try:
        engine = Engine.open(dev)
        for tree in (engine.ca_tree, engine.snaps, engine.usage, engine.remap):
            for _item in tree.scan():    # the CA index is read only on hint misses
                pass
        return engine.seq, snapshot_fs(engine)
    except CorruptError as exc:
        return exc
    except FsError as exc:
        assert exc.errno == errno.EIO, exc
        return exc


def covered(ranges, bit):
    return any(lo * 8 <= bit < hi * 8 for lo, hi in ranges)


def check_flip(image, kind, blockno, ranges, bit):
    dev = flipped(image, blockno, bit)
    got = read_everything(dev)
    where = f"{kind} block {blockno} bit {bit}"
    if not isinstance(got, Exception):
        seq, content = got
        assert content == image.expected[seq], f"{where}: wrong data read from checkpoint {seq}"
    if not covered(ranges, bit):
        return                 # unused bytes: the committed state must simply read back
    raw = dev.read(blockno)
    if kind in (DATA, NODE):
        assert isinstance(got, Exception), f"{where}: not detected"
    elif kind == SYSNODE:
        assert isinstance(got, Exception) or got[0] < image.seq, f"{where}: not detected"
    elif kind == CHECKPOINT:
        assert isinstance(got, Exception) or got[0] == image.seq - 1, f"{where}: checkpoint not refused"
    elif kind == SUPER:
        with pytest.raises(CorruptError):
            decode_superblock(raw)
        assert got[0] == image.seq, f"{where}: the mirror should have been used"
    elif kind == SUMMARY:
        with pytest.raises(CorruptError):
            decode_summary(raw)


# Bits of every header field, the first and last covered bytes, and some in between.
def bits_to_try(ranges, rnd):
    lo, hi = ranges[0]
    picks = {0, 7, 8 * 4 + 1, 8 * 12, 8 * 20 + 3, 8 * 40, (hi - 1) * 8 + 7, hi * 8, BS * 8 - 1}
    picks |= {rnd.randrange(lo * 8, hi * 8) for _ in range(6)}
    return sorted(b for b in picks if b < BS * 8)


def test_every_kind_of_block_is_covered(image):
    kinds = {k for k, _b, _r in image.blocks}
    assert kinds == {DATA, NODE, SYSNODE, SUMMARY, CHECKPOINT, SUPER}


@pytest.mark.parametrize("kind", [DATA, NODE, SYSNODE, SUMMARY, CHECKPOINT, SUPER])
def test_flips_in_every_block_are_detected(image, kind):
    rnd = random.Random(kind)
    blocks = [b for b in image.blocks if b[0] == kind]
    for _kind, blockno, ranges in blocks:
        for bit in bits_to_try(ranges, rnd):
            check_flip(image, kind, blockno, ranges, bit)


@given(data=st.data())
def test_any_bit_of_any_block(image, data):
    kind, blockno, ranges = data.draw(st.sampled_from(image.blocks))
    bit = data.draw(st.integers(0, BS * 8 - 1))
    check_flip(image, kind, blockno, ranges, bit)


def test_flipped_data_block_gives_eio_on_read(image):
    """The file level: read() of the damaged range fails, other ranges still read."""
    engine = Engine.open(MemoryDevice(bytearray(image.data), readonly=True))
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME, writable=False)
    ino = fs.lookup(C.ROOT_INO, b"big")
    key = fs.tree.get(block_key(ino, 1))
    paddr = engine.ca.get(bytes(key[8:40]))[0]
    dev = flipped(image, paddr, 12345)
    fs = FileSystem(Engine.open(dev), C.DEFAULT_TREE_NAME, writable=False)
    with pytest.raises((CorruptError, FsError)) as err:
        fs.read(ino, BS, 10)
    assert err.value.errno == errno.EIO
    want = image.expected[image.seq][C.DEFAULT_TREE_NAME][b"/big"][2]
    assert fs.read(ino, 0, BS) == want[:BS]
    assert fs.read(ino, 2 * BS, 3 * BS) == want[2 * BS:5 * BS]
