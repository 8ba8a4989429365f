"""Superblock: block 0 and, as a mirror, the last block of the device."""
from construct import Bytes, Const, Int8ul, Int32ul, Int64ul, Padding, Struct

from ..errors import CorruptError, UnsupportedError
from . import constants as C
from .checksum import crc32c

Superblock = Struct(
    "magic" / Const(C.SUPERBLOCK_MAGIC),
    "version" / Int32ul,             # FORMAT_VERSION that wrote it
    "block_size" / Int32ul,          # bytes, power of two, 4096..65536
    "compat" / Int64ul,              # feature bits a reader may ignore
    "ro_compat" / Int64ul,           # unknown bits: mount read-only only
    "incompat" / Int64ul,            # unknown bits: refuse
    "uuid" / Bytes(16),              # random at mkfs; identifies the device, never hashed
    "label" / Bytes(C.LABEL_MAX),    # UTF-8, NUL padded
    "segment_blocks" / Int32ul,      # blocks per segment
    "reserved0" / Int32ul,           # 0
    "device_blocks" / Int64ul,       # device size in blocks when formatted
    "first_segment_block" / Int64ul, # block number of segment 0
    "segment_count" / Int64ul,       # segments in the segment area
    "checkpoint_slot_a" / Int64ul,   # block number of checkpoint slot 0 (always 1)
    "checkpoint_slot_b" / Int64ul,   # block number of checkpoint slot 1 (always 2)
    "mirror_block" / Int64ul,        # block number of the mirror copy (last block)
    "created_ns" / Int64ul,          # creation time, ns since the epoch
    "hash_algo" / Int8ul,            # 1 = blake3-256
    Padding(3),
    "crc32c" / Int32ul,              # CRC32C of bytes 0..187 (everything before this field)
)
SUPERBLOCK_SIZE = 192
assert Superblock.sizeof() == SUPERBLOCK_SIZE, Superblock.sizeof()
CRC_OFFSET = SUPERBLOCK_SIZE - 4
HASH_ALGO_BLAKE3 = 1
superblock_compiled = Superblock.compile()


def encode_superblock(sb: dict) -> bytes:
    """Build the superblock bytes (SUPERBLOCK_SIZE) with a fresh CRC."""
    raw = bytearray(Superblock.build({**sb, "crc32c": 0}))
    raw[CRC_OFFSET:] = crc32c(bytes(raw[:CRC_OFFSET])).to_bytes(4, "little")
    return bytes(raw)


def decode_superblock(raw) -> dict:
    """Validate length, magic, CRC, feature bits and geometry, then parse."""
    raw = bytes(raw[:SUPERBLOCK_SIZE])
    if len(raw) < SUPERBLOCK_SIZE:
        raise CorruptError(f"superblock truncated: {len(raw)} of {SUPERBLOCK_SIZE} bytes")
    if raw[:8] != C.SUPERBLOCK_MAGIC:
        raise CorruptError("not a ctrfs device (bad superblock magic)")
    want = int.from_bytes(raw[CRC_OFFSET:], "little")
    got = crc32c(raw[:CRC_OFFSET])
    if want != got:
        raise CorruptError(f"superblock CRC mismatch: stored {want:#010x}, computed {got:#010x}")
    sb = superblock_compiled.parse(raw)
    unknown = sb.incompat & ~C.ALL_INCOMPAT
    if unknown:
        raise UnsupportedError(f"superblock has unknown incompatible features {unknown:#x}")
    if sb.version != C.FORMAT_VERSION:
        raise UnsupportedError(f"format version {sb.version} is not supported: this ctrfs reads version "
                               f"{C.FORMAT_VERSION} only (make the device again with mkfs.ctrfs and import its images)")
    check_geometry(sb)
    return dict((k, v) for k, v in sb.items() if not k.startswith("_"))


def check_geometry(sb) -> None:
    bs, seg = sb["block_size"], sb["segment_blocks"]
    if bs & (bs - 1) or not C.MIN_BLOCK_SIZE <= bs <= C.MAX_BLOCK_SIZE:
        raise CorruptError(f"superblock: bad block size {bs}")
    if not C.MIN_SEGMENT_BLOCKS <= seg <= C.MAX_SEGMENT_BLOCKS:
        raise CorruptError(f"superblock: bad segment size {seg} blocks")
    end = sb["first_segment_block"] + sb["segment_count"] * seg
    if (sb["first_segment_block"] != C.FIRST_SEGMENT_BLOCK or sb["segment_count"] < C.MIN_SEGMENTS
            or end > sb["mirror_block"] or sb["mirror_block"] != sb["device_blocks"] - 1
            or (sb["checkpoint_slot_a"], sb["checkpoint_slot_b"]) != C.CHECKPOINT_SLOTS
            or sb["hash_algo"] != HASH_ALGO_BLAKE3):
        raise CorruptError("superblock: inconsistent geometry")
