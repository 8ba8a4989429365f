"""CA log block: content-address entries changed since the last merge into the CA tree.

The log is a chain of blocks, newest first: the checkpoint points at the head, each block
at its predecessor (address and blake3, the Merkle link).  An entry is the full new value
of one CA entry; refcount 0 and paddr 0 mean the entry was deleted.
"""
import struct

from construct import Bytes, Const, Int8ul, Int32ul, Int64ul, Struct

from ..errors import CorruptError
from . import constants as C
from .checksum import check_crc, crc32c

CalogHeader = Struct(
    "magic" / Const(C.CALOG_MAGIC),
    "prev_paddr" / Int64ul,          # address of the previous (older) chain block; 0 = end of chain
    "prev_hash" / Bytes(C.HASH_SIZE),  # blake3 (ca log context) of the previous chain block
    "count" / Int32ul,               # entries following the header
    "crc32c" / Int32ul,              # CRC32C of the header (this field as 0) + count entries
    "reserved" / Int64ul,            # 0
)
CALOG_HEADER_SIZE = 64
assert CalogHeader.sizeof() == CALOG_HEADER_SIZE
CRC_OFFSET = 52
_HEADER = struct.Struct("<8sQ32sIIQ")    # CalogHeader, for the hot path
assert _HEADER.size == CALOG_HEADER_SIZE

CalogEntry = Struct(
    "hash" / Bytes(C.HASH_SIZE),     # content address of the block
    "paddr" / Int64ul,               # where the block is; 0 (and refcount 0) = entry deleted
    "refcount" / Int32ul,            # references to the block
    "kind" / Int8ul,                 # BLOCK_DATA / BLOCK_NODE (0 when deleted)
    "reserved" / Bytes(3),           # 0
)
CALOG_ENTRY_SIZE = 48
assert CalogEntry.sizeof() == CALOG_ENTRY_SIZE
_ENTRY = struct.Struct("<32sQIB3x")
assert _ENTRY.size == CALOG_ENTRY_SIZE


def calog_capacity(block_size: int) -> int:
    return (block_size - CALOG_HEADER_SIZE) // CALOG_ENTRY_SIZE


def encode_calog(prev_paddr, prev_hash, entries, block_size) -> bytes:
    """entries: [(hash, paddr, refcount, kind)].  Returns one block."""
    n = len(entries)
    if not 0 < n <= calog_capacity(block_size):
        raise ValueError(f"{n} CA log entries, want 1..{calog_capacity(block_size)}")
    body = bytearray(block_size)
    for i, (h, paddr, ref, kind) in enumerate(entries):
        _ENTRY.pack_into(body, CALOG_HEADER_SIZE + i * CALOG_ENTRY_SIZE, h, paddr, ref, kind)
    _HEADER.pack_into(body, 0, C.CALOG_MAGIC, prev_paddr, prev_hash, n, 0, 0)
    end = CALOG_HEADER_SIZE + n * CALOG_ENTRY_SIZE
    body[CRC_OFFSET:CRC_OFFSET + 4] = crc32c(bytes(body[:end])).to_bytes(4, "little")
    return bytes(body)


def decode_calog(raw) -> dict:
    """Returns {prev_paddr, prev_hash, entries: [(hash, paddr, refcount, kind)]}."""
    raw = bytes(raw)
    if len(raw) < CALOG_HEADER_SIZE:
        raise CorruptError(f"CA log block truncated: {len(raw)} bytes")
    magic, prev_paddr, prev_hash, count, crc, reserved = _HEADER.unpack_from(raw)
    if magic != C.CALOG_MAGIC:
        raise CorruptError("CA log block: bad magic")
    end = CALOG_HEADER_SIZE + count * CALOG_ENTRY_SIZE
    if count == 0 or end > len(raw):
        raise CorruptError(f"CA log block: bad entry count {count}")
    check_crc(raw, end, CRC_OFFSET, crc, "CA log block")
    entries = [_ENTRY.unpack_from(raw, pos) for pos in range(CALOG_HEADER_SIZE, end, CALOG_ENTRY_SIZE)]
    return dict(prev_paddr=prev_paddr, prev_hash=prev_hash, entries=entries)
