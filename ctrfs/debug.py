"""`ctrfs debug ...`: print on-disk structures as parsed (superblocks, checkpoint slots, tree
nodes, segments, whole trees).  Damaged structures are printed as far as they parse,
followed by what validation says about them; that is the point when a crash test fails."""
import datetime
import os
import stat
import uuid as uuidlib

import construct

from .errors import CorruptError, DeviceError, NotCtrfsError, UsageError
from .format import constants as C
from .format.checkpoint import CHECKPOINT_SIZE, Checkpoint, decode_checkpoint
from .format.items import (RemapEntry, split_fs_key, unpack_ca, unpack_dirent, unpack_inode, unpack_snap,
                           unpack_usage)
from .format.image import unpack_source
from .format.node import decode_node, encode_node
from .format.pointer import unpack_pointer
from .format.segment import decode_summary
from .format.superblock import SUPERBLOCK_SIZE, Superblock, decode_superblock


TREE_NAMES = {C.TREE_FS: "fs", C.TREE_CA: "ca", C.TREE_SNAP: "snap", C.TREE_USAGE: "usage",
              C.TREE_REMAP: "remap"}
BLOCK_NAMES = {C.BLOCK_DATA: "data", C.BLOCK_NODE: "node", C.BLOCK_SYSNODE: "sysnode"}
SNAP_NAMES = {C.SNAP_IMAGE: "image", C.SNAP_WRITABLE: "writable"}
SEG_NAMES = {C.SEG_FREE: "free", C.SEG_OPEN: "open", C.SEG_FULL: "full"}
ITEM_NAMES = {C.ITEM_SUPER: "super", C.ITEM_INODE: "inode", C.ITEM_XATTR: "xattr",
              C.ITEM_DIRENT: "dirent", C.ITEM_BLOCK: "block",
              C.ITEM_IMAGE: "image"}
SYSTEM_TREES = {"snap": C.TREE_SNAP, "ca": C.TREE_CA, "usage": C.TREE_USAGE, "remap": C.TREE_REMAP}


# ---- formatting ------------------------------------------------------------------------
def show(obj, out, indent=0, name=None):
    """Print a parsed container (dict / construct Container / list) one field a line."""
    pad = "  " * indent
    label = f"{name}: " if name is not None else ""
    if isinstance(obj, dict):
        if name is not None:
            print(f"{pad}{name}:", file=out)
            indent += 1
        for k, v in obj.items():
            if not str(k).startswith("_"):
                show(v, out, indent, k)
    elif isinstance(obj, list):
        print(f"{pad}{label}[{len(obj)}]", file=out)
        for i, v in enumerate(obj):
            show(v, out, indent + 1, f"[{i}]")
    else:
        print(f"{pad}{label}{value_text(name, obj)}", file=out)


def value_text(name, v):
    if isinstance(v, (bytes, bytearray)):
        if name == "uuid" and len(v) == 16:
            return str(uuidlib.UUID(bytes=bytes(v)))
        if name == "label":
            return repr(bytes(v).rstrip(b"\0").decode("utf-8", "backslashreplace"))
        if name == "magic":
            return repr(bytes(v))
        return bytes(v).hex() if any(v) else f"0 x {len(v)} bytes"
    if isinstance(v, int) and name is not None and str(name).endswith("_ns") and v:
        return f"{v} ({iso(v)})"
    if isinstance(v, int) and name == "crc32c":
        return f"{v:#010x}"
    return str(v)


def iso(ns):
    return datetime.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def verdict(out, decode, raw):
    try:
        decode(raw)
    except CorruptError as exc:
        print(f"  INVALID: {exc}", file=out)
        return False
    print("  valid", file=out)
    return True


def device_block_size(dev):
    """Block size from the superblock (primary, else mirror); 4096 if neither is valid."""
    from .engine import read_superblock
    try:
        return read_superblock(dev)["block_size"], True
    except (CorruptError, DeviceError):
        return C.DEFAULT_BLOCK_SIZE, False


# ---- superblock and checkpoints ----------------------------------------------------------
def dump_super(dev, out):
    """Both superblocks; exit 4 if neither is valid."""
    primary = dev.read_at(0, SUPERBLOCK_SIZE)
    print(f"superblock (block 0, byte 0) of {dev.path}, device {dev.size} bytes", file=out)
    ok = _show_super(primary, out)
    bs = None
    try:
        bs = decode_superblock(primary)["block_size"]
    except CorruptError:
        pass
    sizes = [bs] if bs else [s for s in (4096, 8192, 16384, 32768, 65536) if dev.size >= 2 * s]
    for size in sizes:
        off = (dev.size // size - 1) * size
        raw = dev.read_at(off, SUPERBLOCK_SIZE)
        if bs or raw[:8] == C.SUPERBLOCK_MAGIC:
            print(f"mirror superblock (block {off // size} at block size {size}, byte {off})", file=out)
            ok = _show_super(raw, out) or ok
            break
    else:
        print("mirror superblock: none found at any block size", file=out)
    if not ok:
        refuse_not_ctrfs(dev)
        raise CorruptError("no valid superblock")
    return 0


def _show_super(raw, out):
    try:
        show(Superblock.parse(raw), out, 1)
    except construct.ConstructError:
        print(f"  no superblock here (magic {bytes(raw[:8])!r})", file=out)
    return verdict(out, decode_superblock, raw)


def refuse_not_ctrfs(dev):
    """A damaged ctrfs device is dumped as far as it goes; something else is refused."""
    if dev.size < 8 or dev.read_at(0, 8) != C.SUPERBLOCK_MAGIC:
        raise NotCtrfsError("not a ctrfs file system (no superblock found)")


def dump_checkpoints(dev, out):
    bs, known = device_block_size(dev)
    if not known:
        refuse_not_ctrfs(dev)
        print(f"no valid superblock: assuming block size {bs}", file=out)
    best = None
    for blockno in C.CHECKPOINT_SLOTS:
        raw = dev.read_at(blockno * bs, bs)
        print(f"checkpoint slot {blockno - C.CHECKPOINT_SLOTS[0]} (block {blockno})", file=out)
        try:
            show(Checkpoint.parse(raw[:CHECKPOINT_SIZE]), out, 1)
            print(f"  tail seq: {int.from_bytes(raw[-8:], 'little')}", file=out)
        except construct.ConstructError:
            print(f"  no checkpoint here (magic {bytes(raw[:8])!r})", file=out)
        if verdict(out, decode_checkpoint, raw):
            seq = decode_checkpoint(raw)["seq"]
            best = max(best or (0, 0), (seq, blockno))
    if best is None:
        raise CorruptError("no valid checkpoint in either slot")
    print(f"newest valid checkpoint: seq {best[0]} in block {best[1]}", file=out)
    return 0


# ---- nodes and items -------------------------------------------------------------------------
def describe_item(tree, key, val):
    """One line for a leaf item of a tree of kind `tree`."""
    try:
        if tree == C.TREE_FS:
            return _fs_item(key, val)
        if tree == C.TREE_CA:
            paddr, ref, kind = unpack_ca(val)
            return f"ca {key.hex()} paddr {paddr} refcount {ref} {BLOCK_NAMES.get(kind, kind)}"
        if tree == C.TREE_SNAP:
            e = unpack_snap(val)
            return (f"snap {key.decode('utf-8', 'backslashreplace')!r} {SNAP_NAMES[e['kind']]} "
                    f"root {e['root'][0]}:{e['root'][1].hex()[:16]} created {iso(e['created_ns'])} "
                    f"bytes {e['logical_bytes']} inodes {e['inodes']} "
                    f"parent {e['parent_name'].decode('utf-8', 'backslashreplace') or '-'}")
        if tree == C.TREE_USAGE:
            state, live, alloc, freed = unpack_usage(val)
            return (f"segment {int.from_bytes(key, 'big')} {SEG_NAMES.get(state, state)} live {live} "
                    f"alloc_unit_seq {alloc} freed_seq {freed}")
        if tree == C.TREE_REMAP:
            e = RemapEntry.parse(val)
            return (f"remap tree {key[:8].hex()} ino {int.from_bytes(key[8:], 'big')} -> "
                    f"{e.stored_ino} flags {e.flags}")
    except (CorruptError, construct.ConstructError, KeyError, ValueError) as exc:
        return f"key {key.hex()} value {val.hex()}  BAD: {exc}"
    return f"key {key.hex()} value {val.hex()}"


def _fs_item(key, val):
    ino, item, sub = split_fs_key(key)
    head = f"{ino} {ITEM_NAMES[item]}"
    if item == C.ITEM_SUPER:
        if sub:
            return f"{head} orphan {int.from_bytes(sub, 'big')}"
        return f"{head} next_ino {int.from_bytes(val[:8], 'little')}"
    if item == C.ITEM_INODE:
        (mode, uid, gid, nlink, rdev, size, at, mt, ct, flags, gen), inline = unpack_inode(val)
        kind = stat.filemode(mode)
        return (f"{head} {kind} ({mode:o}) uid {uid} gid {gid} nlink {nlink} rdev {rdev} size {size} "
                f"mtime {iso(mt) if mt else 0} flags {flags:#x} gen {gen}"
                + (f" inline {len(inline)} bytes" if flags & C.INODE_INLINE else ""))
    if item == C.ITEM_DIRENT:
        target, dtype = unpack_dirent(val)
        return f"{head} hash {sub[:8].hex()} {sub[8:]!r} -> ino {target} type {dtype}"
    if item == C.ITEM_XATTR:
        shown = val[:32]
        return f"{head} {sub!r} = {shown!r}{'...' if len(val) > 32 else ''} ({len(val)} bytes)"
    if item == C.ITEM_IMAGE:
        if sub[:1] == bytes((C.IMAGE_LAYER,)):
            return f"{head} layer diff_id sha256:{val[:32].hex()} chain_id sha256:{val[32:].hex()}"
        if sub[:1] == bytes((C.IMAGE_SOURCE,)):
            digest, size, mt = unpack_source(val)
            return f"{head} source {mt} sha256:{digest.hex()} {size} bytes"
        what = "recipe" if sub[:1] == bytes((C.IMAGE_RECIPE,)) else "config"
        return f"{head} {what} piece {int.from_bytes(sub[1:], 'big')} ({len(val)} bytes)"
    paddr, h = unpack_pointer(val)
    return f"{head} index {int.from_bytes(sub, 'big')} -> paddr {paddr} hash {h.hex()}"


def print_node(out, tree, level, gen, keys, vals, indent="  "):
    for k, v in zip(keys, vals):
        if level > 0:
            print(f"{indent}key {k.hex()} -> child paddr {v[0]} hash {v[1].hex()}", file=out)
        else:
            print(f"{indent}{describe_item(tree, k, v)}", file=out)


def dump_node(dev, paddr, out):
    bs, known = device_block_size(dev)
    if paddr * bs + bs > dev.size:
        raise UsageError(f"block {paddr} is beyond the device ({dev.size // bs} blocks)")
    raw = dev.read_at(paddr * bs, bs)
    try:
        tree, level, gen, keys, vals = decode_node(raw)
    except CorruptError as exc:
        print(f"block {paddr}: not a valid tree node: {exc}", file=out)
        raise
    digest = encode_node(tree, level, gen, keys, vals, bs)[1]
    print(f"node at block {paddr}: tree {TREE_NAMES.get(tree, tree)} level {level} items {len(keys)} "
          f"generation {gen}", file=out)
    print(f"  hash {digest.hex()}", file=out)
    print_node(out, tree, level, gen, keys, vals)
    return 0


# ---- segments ---------------------------------------------------------------------------------
def dump_segment(engine, segno, out):
    log = engine.log
    if segno >= log.nsegs:
        raise UsageError(f"segment {segno} out of range (the device has {log.nsegs})")
    start = log.seg_start(segno)
    alloc = int(log.alloc_seq[segno])
    print(f"segment {segno}: blocks {start}..{start + log.seg_blocks - 1} "
          f"state {SEG_NAMES.get(int(log.state[segno]))} live {int(log.live[segno])} "
          f"pinned {int(log.pinned[segno])} alloc_unit_seq {alloc} freed_seq {int(log.freed_seq[segno])}"
          + (" (log head, offset %d)" % log.head_off if segno == log.head_seg else ""), file=out)
    off = 0
    while off < log.seg_blocks - 1:
        try:
            s = decode_summary(engine.dev.read(start + off))
        except CorruptError as exc:
            print(f"  offset {off}: no log unit ({exc})", file=out)
            break
        stale = s["unit_seq"] < alloc or s["segment"] != segno
        print(f"  unit at offset {off}: unit_seq {s['unit_seq']} commit_seq {s['commit_seq']} "
              f"blocks {len(s['entries'])}" + ("  STALE (older use of this segment)" if stale else ""),
              file=out)
        for i, (kind, owner, prefix) in enumerate(s["entries"]):
            paddr = start + off + 1 + i
            what = BLOCK_NAMES.get(kind, kind)
            if kind != C.BLOCK_DATA:
                what += f" ({TREE_NAMES.get(owner, owner)})"
            print(f"    {paddr:>10}  {what:<16} {prefix.hex()}", file=out)
        off += 1 + len(s["entries"])
    return 0


# ---- trees -------------------------------------------------------------------------------------
def dump_tree(engine, name, system, out):
    if (name is None) == (system is None):
        raise UsageError("give either an image/tree NAME or --system snap|ca|usage|remap")
    if system is not None:
        tree = {"snap": engine.snaps, "ca": engine.ca_tree, "usage": engine.usage,
                "remap": engine.remap}[system]
        print(f"system tree {system}", file=out)
    else:
        from .catalogue import resolve, shown

        raw = resolve(engine, os.fsencode(name))
        e = engine.snapshot(raw)
        tree = engine.tree(raw)
        print(f"{SNAP_NAMES[e['kind']]} {shown(raw)}: root {e['root'][0]}:{e['root'][1].hex()}", file=out)
    nodes = 0
    for ptr, level, keys, vals in tree.walk_nodes():
        nodes += 1
        print(f"node paddr {ptr[0]} hash {ptr[1].hex()} level {level} items {len(keys)}", file=out)
        print_node(out, tree.kind, level, 0, keys, vals)
    print(f"{nodes} node(s)", file=out)
    return 0
