"""Keys and values of the items stored in the trees.

FS tree keys are (ino field u64 big-endian, item type u8, subkey).  The ino field is the
inode number, with the class bit KEY_CLASS_DATA set when the type is ITEM_BLOCK (the
last type; a range bound fs_key(ino, ITEM_BLOCK + 1) carries it too), clear otherwise:
namespace items (super, inode, xattrs, dirents, image metadata) sort by inode and type
before every block map, and block maps sort by inode and block index after them.  Code
outside format/ builds and reads keys through the helpers below.  Values
are little-endian like every other structure."""
import struct

import blake3
import numpy as np
from construct import Bytes, Int8ul, Int32ul, Int64sl, Int64ul, Padding, Struct

from ..errors import CorruptError
from . import constants as C
from .pointer import POINTER_SIZE, Pointer

InodeRecord = Struct(
    "mode" / Int32ul,                # st_mode: file type and permission bits
    "uid" / Int32ul,                 # owner user id
    "gid" / Int32ul,                 # owner group id
    "nlink" / Int32ul,               # directory entries naming it (+ "." and ".." for dirs)
    "rdev" / Int64ul,                # device number for block/char devices, else 0
    "size" / Int64ul,                # bytes
    "atime_ns" / Int64sl,            # ns since the epoch
    "mtime_ns" / Int64sl,            # ns since the epoch
    "ctime_ns" / Int64sl,            # ns since the epoch
    "flags" / Int32ul,               # INODE_INLINE: the data follows this record in the value
    "generation" / Int32ul,          # bumped when an inode number is reused
)
INODE_SIZE = 64
assert InodeRecord.sizeof() == INODE_SIZE
_INODE = struct.Struct("<IIIIQQqqqII")
assert _INODE.size == INODE_SIZE

DirentValue = Struct(
    "ino" / Int64ul,                 # inode the name refers to
    "dtype" / Int8ul,                # DT_* type (st_mode >> 12)
)
DIRENT_SIZE = 9
assert DirentValue.sizeof() == DIRENT_SIZE

BlockEntry = Pointer                 # value of ITEM_BLOCK: the data block of that index
BLOCK_ENTRY_SIZE = POINTER_SIZE

SuperValue = Struct(                 # value of the (0, ITEM_SUPER) item of an FS tree
    "next_ino" / Int64ul,            # inode number the next new inode gets
    "reserved" / Int64ul,            # 0
)
SUPER_SIZE = 16
assert SuperValue.sizeof() == SUPER_SIZE

CAEntry = Struct(
    "paddr" / Int64ul,               # block number holding the content
    "refcount" / Int32ul,            # pointers to it from stored nodes + holders of roots
    "kind" / Int8ul,                 # BLOCK_DATA or BLOCK_NODE
    Padding(3),
)
CA_ENTRY_SIZE = 16
assert CAEntry.sizeof() == CA_ENTRY_SIZE
_CA = struct.Struct("<QIB3x")

SnapEntry = Struct(
    "kind" / Int8ul,                 # SNAP_IMAGE (immutable) or SNAP_WRITABLE
    Padding(7),
    "created_ns" / Int64ul,          # ns since the epoch
    "root" / Pointer,                # root node of the FS tree
    "parent_root" / Bytes(32),       # root hash of the snapshot it was cloned from; 0 = none
    "logical_bytes" / Int64ul,       # sum of file sizes when committed
    "inodes" / Int64ul,              # inodes when committed
)
SNAP_ENTRY_SIZE = 104                # followed by the parent's name (UTF-8, may be empty)
assert SnapEntry.sizeof() == SNAP_ENTRY_SIZE

UsageEntry = Struct(
    "state" / Int8ul,                # SEG_FREE / SEG_OPEN / SEG_FULL
    Padding(3),
    "live" / Int32ul,                # live blocks (excluding usage-table nodes, see spec)
    "alloc_unit_seq" / Int64ul,      # first log unit seq of its current use; older units are stale
    "freed_seq" / Int64ul,           # commit seq in which it became empty; 0 = not pending
)
USAGE_ENTRY_SIZE = 24
assert UsageEntry.sizeof() == USAGE_ENTRY_SIZE
_USAGE = struct.Struct("<B3xIQQ")

RemapEntry = Struct(
    "stored_ino" / Int64ul,          # inode number inside the FS tree
    "flags" / Int64ul,               # 0
)
REMAP_ENTRY_SIZE = 16
assert RemapEntry.sizeof() == REMAP_ENTRY_SIZE


# ---- FS tree keys -------------------------------------------------------------
KEY_TYPE = 8                         # offset of the item type byte in an FS tree key
KEY_SUB = 9                          # offset of the subkey
NAMESPACE_END = C.KEY_CLASS_DATA.to_bytes(8, "big")   # first key past the namespace
_BLOCK_TYPE = bytes((C.ITEM_BLOCK,))


def _ino_field(ino: int, item: int) -> bytes:
    return (ino | C.KEY_CLASS_DATA if item >= C.ITEM_BLOCK else ino).to_bytes(8, "big")


def fs_key(ino: int, item: int, sub: bytes = b"") -> bytes:
    return _ino_field(ino, item) + bytes((item,)) + sub


def item_range(ino: int, item: int):
    """(lo, hi): the keys of one inode's items of one type."""
    field = _ino_field(ino, item)
    return field + bytes((item,)), field + bytes((item + 1,))


def inode_ranges(ino: int):
    """The two key ranges holding every item of one inode: its namespace items, its block map."""
    return ((ino.to_bytes(8, "big"), (ino + 1).to_bytes(8, "big")),
            ((ino | C.KEY_CLASS_DATA).to_bytes(8, "big"), ((ino + 1) | C.KEY_CLASS_DATA).to_bytes(8, "big")))


def block_key(ino: int, index: int) -> bytes:
    return (ino | C.KEY_CLASS_DATA).to_bytes(8, "big") + _BLOCK_TYPE + index.to_bytes(8, "big")


def block_end(ino: int) -> bytes:
    """First key after every block-map item of ino."""
    return item_range(ino, C.ITEM_BLOCK)[1]


def key_ino(key) -> int:
    """Inode number of an FS tree key (either class)."""
    return int.from_bytes(key[:8], "big") & C.MAX_INO


def key_type(key) -> int:
    return key[KEY_TYPE]


def is_block_key(key) -> bool:
    return len(key) > KEY_TYPE and key[KEY_TYPE] == C.ITEM_BLOCK


def block_index(key) -> int:
    return int.from_bytes(key[KEY_SUB:KEY_SUB + 8], "big")


# block_key's layout as a numpy dtype: a run of block-map keys decoded in one call.
BLOCK_KEY_DTYPE = np.dtype([("ino", ">u8"), ("type", "u1"), ("index", ">u8")])
assert BLOCK_KEY_DTYPE.itemsize == len(block_key(0, 0))


def name_hash(name: bytes) -> int:
    """63-bit hash of a directory entry name: the readdir cookie order (stable across changes)."""
    return int.from_bytes(blake3.blake3(name).digest(8), "big") >> 1


def dirent_key(dir_ino: int, name: bytes) -> bytes:
    return fs_key(dir_ino, C.ITEM_DIRENT, name_hash(name).to_bytes(8, "big") + name)


_NAMESPACE_TYPES = frozenset(t for t in C.ITEM_TYPES if t != C.ITEM_BLOCK)


def split_fs_key(key: bytes):
    """(ino, item type, subkey); CorruptError unless the type is known and the class bit is
    set exactly for block-map items."""
    if len(key) < 9 or not (key[8] == C.ITEM_BLOCK if key[0] & 0x80 else key[8] in _NAMESPACE_TYPES):
        raise CorruptError(f"FS tree: malformed key {key.hex()}")
    return int.from_bytes(key[:8], "big") & C.MAX_INO, key[8], key[9:]


def remap_key(tree_hash8: bytes, visible_ino: int) -> bytes:
    return tree_hash8 + visible_ino.to_bytes(8, "big")


def usage_key(segno: int) -> bytes:
    return segno.to_bytes(8, "big")


# ---- values -------------------------------------------------------------------
def pack_inode(mode, uid, gid, nlink, rdev, size, atime, mtime, ctime, flags, generation, inline=b""):
    return _INODE.pack(mode, uid, gid, nlink, rdev, size, atime, mtime, ctime, flags, generation) + inline


def unpack_inode(raw):
    """-> (fields tuple, inline bytes)"""
    if len(raw) < INODE_SIZE:
        raise CorruptError(f"inode item: {len(raw)} bytes, want >= {INODE_SIZE}")
    return _INODE.unpack_from(raw), bytes(raw[INODE_SIZE:])


def pack_dirent(ino: int, dtype: int) -> bytes:
    return ino.to_bytes(8, "little") + bytes((dtype,))


def unpack_dirent(raw):
    if len(raw) != DIRENT_SIZE:
        raise CorruptError(f"dirent item: {len(raw)} bytes, want {DIRENT_SIZE}")
    return int.from_bytes(raw[:8], "little"), raw[8]


def pack_ca(paddr, refcount, kind) -> bytes:
    return _CA.pack(paddr, refcount, kind)


def unpack_ca(raw):
    if len(raw) != CA_ENTRY_SIZE:
        raise CorruptError(f"content-address entry: {len(raw)} bytes, want {CA_ENTRY_SIZE}")
    return _CA.unpack(raw)


def pack_usage(state, live, alloc_unit_seq, freed_seq) -> bytes:
    return _USAGE.pack(state, live, alloc_unit_seq, freed_seq)


def unpack_usage(raw):
    if len(raw) != USAGE_ENTRY_SIZE:
        raise CorruptError(f"usage entry: {len(raw)} bytes, want {USAGE_ENTRY_SIZE}")
    return _USAGE.unpack(raw)


def pack_snap(kind, created_ns, root, parent_root, logical_bytes, inodes, parent_name=b"") -> bytes:
    return SnapEntry.build(dict(kind=kind, created_ns=created_ns, root=dict(paddr=root[0], hash=root[1]),
                                parent_root=parent_root, logical_bytes=logical_bytes, inodes=inodes)) + parent_name


def unpack_snap(raw) -> dict:
    if len(raw) < SNAP_ENTRY_SIZE or len(raw) > SNAP_ENTRY_SIZE + C.SNAP_NAME_MAX:
        raise CorruptError(f"snapshot entry: {len(raw)} bytes")
    e = SnapEntry.parse(raw[:SNAP_ENTRY_SIZE])
    if e.kind not in C.SNAP_KINDS:
        raise CorruptError(f"snapshot entry: bad kind {e.kind}")
    return dict(kind=e.kind, created_ns=e.created_ns, root=(e.root.paddr, e.root.hash),
                parent_root=e.parent_root, logical_bytes=e.logical_bytes, inodes=e.inodes,
                parent_name=bytes(raw[SNAP_ENTRY_SIZE:]))
