"""Checkpoint record: two slots written in turn; the newest valid one is the file system."""
from construct import Array, Const, Int64ul, Int32ul, Struct

from ..errors import CorruptError
from . import constants as C
from .checksum import crc32c
from .pointer import Pointer

RootSet = Struct(
    "seq" / Int64ul,                 # checkpoint sequence these roots were committed in; 0 = empty
    "snap_root" / Pointer,           # snapshot/ref table
    "ca_root" / Pointer,             # content-address index
    "usage_root" / Pointer,          # segment usage table
    "remap_root" / Pointer,          # inode remap table
    "calog_root" / Pointer,          # newest block of the CA log chain; paddr 0 = empty log
    "calog_entries" / Int64ul,       # entries in the CA log chain (duplicates included)
)
assert RootSet.sizeof() == 216

Checkpoint = Struct(
    "magic" / Const(C.CHECKPOINT_MAGIC),
    "seq" / Int64ul,                 # commit sequence number, 1 = mkfs; higher is newer
    "time_ns" / Int64ul,             # wall clock at commit
    "roots" / RootSet,               # system tree roots of this commit (roots.seq = seq)
    "log_segment" / Int64ul,         # segment holding the log head
    "log_offset" / Int64ul,          # next free block within it
    "next_unit_seq" / Int64ul,       # sequence number the next log unit gets
    "live_blocks" / Int64ul,         # blocks referenced by this checkpoint
    "data_blocks" / Int64ul,         # of which data blocks
    "node_blocks" / Int64ul,         # of which FS tree nodes
    "free_segments" / Int64ul,       # segments in state SEG_FREE at commit
    "snapshots" / Int64ul,           # entries in the snapshot table
    "backups" / Array(C.CHECKPOINT_BACKUPS, RootSet),  # older root sets, newest first
    "crc32c" / Int32ul,              # CRC32C of bytes 0..CRC_OFFSET-1
    "reserved" / Int32ul,            # 0
)
CHECKPOINT_SIZE = 960
assert Checkpoint.sizeof() == CHECKPOINT_SIZE
CRC_OFFSET = CHECKPOINT_SIZE - 8
TAIL_SIZE = 8  # the last 8 bytes of the slot block repeat `seq`: a torn write leaves them stale
checkpoint_compiled = Checkpoint.compile()


def encode_checkpoint(cp: dict, block_size: int) -> bytes:
    """A whole slot block: the record, zeros, and `seq` again in the last 8 bytes."""
    raw = bytearray(block_size)
    body = bytearray(Checkpoint.build({**cp, "crc32c": 0, "reserved": 0}))
    body[CRC_OFFSET:CRC_OFFSET + 4] = crc32c(bytes(body[:CRC_OFFSET])).to_bytes(4, "little")
    raw[:CHECKPOINT_SIZE] = body
    raw[-TAIL_SIZE:] = cp["seq"].to_bytes(8, "little")
    return bytes(raw)


def decode_checkpoint(raw) -> dict:
    """Validate magic, CRC and the torn-write tail of a slot block, then parse."""
    raw = bytes(raw)
    if len(raw) < CHECKPOINT_SIZE + TAIL_SIZE:
        raise CorruptError(f"checkpoint truncated: {len(raw)} bytes")
    if raw[:8] != C.CHECKPOINT_MAGIC:
        raise CorruptError("checkpoint: bad magic")
    want = int.from_bytes(raw[CRC_OFFSET:CRC_OFFSET + 4], "little")
    got = crc32c(raw[:CRC_OFFSET])
    if want != got:
        raise CorruptError(f"checkpoint CRC mismatch: stored {want:#010x}, computed {got:#010x}")
    cp = checkpoint_compiled.parse(raw[:CHECKPOINT_SIZE])
    tail = int.from_bytes(raw[-TAIL_SIZE:], "little")
    if tail != cp.seq:
        raise CorruptError(f"checkpoint torn: seq {cp.seq} at head, {tail} at tail")
    return to_plain(cp)


def to_plain(obj):
    """construct Containers -> plain dicts/lists (drops construct's private keys)."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    return obj
