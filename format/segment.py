"""Log unit summary: the first block of every log unit says what each following block is.

A segment holds one or more log units, written back to back: [summary][block]...[block].
"""
import struct

from construct import Array, Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from ..errors import CorruptError
from . import constants as C
from .checksum import check_crc, crc32c

SummaryHeader = Struct(
    "magic" / Const(C.SUMMARY_MAGIC),
    "unit_seq" / Int64ul,            # global log unit sequence number, strictly increasing
    "commit_seq" / Int64ul,          # seq of the checkpoint this unit will belong to
    "segment" / Int64ul,             # segment number this unit was written into
    "count" / Int32ul,               # entries (= payload blocks following this block)
    "reserved" / Int32ul,            # 0
    "crc32c" / Int32ul,              # CRC32C of the header (this field as 0) + count entries
    "reserved2" / Int32ul,           # 0
)
SUMMARY_HEADER_SIZE = 48
assert SummaryHeader.sizeof() == SUMMARY_HEADER_SIZE
CRC_OFFSET = 40
_HEADER = struct.Struct("<8sQQQIIII")   # SummaryHeader, for the hot path (tests keep them equal)
assert _HEADER.size == SUMMARY_HEADER_SIZE

SummaryEntry = Struct(
    "kind" / Int8ul,                 # BLOCK_DATA / BLOCK_NODE / BLOCK_SYSNODE
    "owner" / Int8ul,                # tree kind for nodes (TREE_*), 0 for data
    "reserved" / Int16ul,            # 0
    "hash_prefix" / Bytes(C.HASH_PREFIX_SIZE),  # first bytes of the block's blake3
)
SUMMARY_ENTRY_SIZE = 16
assert SummaryEntry.sizeof() == SUMMARY_ENTRY_SIZE
_ENTRY = struct.Struct(f"<BB2x{C.HASH_PREFIX_SIZE}s")   # (kind, owner, hash prefix) of a SummaryEntry
assert _ENTRY.size == SUMMARY_ENTRY_SIZE
_KINDS = frozenset(C.BLOCK_KINDS)

Summary = Struct(
    "header" / SummaryHeader,        # count = number of entries
    "entries" / Array(lambda ctx: ctx.header.count, SummaryEntry),  # one per payload block, in order
)


def max_entries(block_size: int) -> int:
    return (block_size - SUMMARY_HEADER_SIZE) // SUMMARY_ENTRY_SIZE


def encode_summary(unit_seq, commit_seq, segment, entries, block_size) -> bytes:
    """entries: iterable of (kind, owner, hash).  Returns one block."""
    body = bytearray(block_size)
    pos = SUMMARY_HEADER_SIZE
    n = 0
    for kind, owner, digest in entries:
        body[pos:pos + 4] = bytes((kind, owner, 0, 0))
        body[pos + 4:pos + 16] = digest[:C.HASH_PREFIX_SIZE]
        pos += SUMMARY_ENTRY_SIZE
        n += 1
    if not 0 < n <= max_entries(block_size):
        raise ValueError(f"{n} summary entries, want 1..{max_entries(block_size)}")  # decode refuses 0
    body[:SUMMARY_HEADER_SIZE] = _HEADER.pack(C.SUMMARY_MAGIC, unit_seq, commit_seq, segment, n, 0, 0, 0)
    body[CRC_OFFSET:CRC_OFFSET + 4] = crc32c(bytes(body[:pos])).to_bytes(4, "little")
    return bytes(body)


def decode_summary(raw) -> dict:
    """Returns {unit_seq, commit_seq, segment, entries: [(kind, owner, prefix)]}."""
    raw = bytes(raw)
    if len(raw) < SUMMARY_HEADER_SIZE:
        raise CorruptError(f"log unit summary truncated: {len(raw)} bytes")
    if raw[:8] != C.SUMMARY_MAGIC:
        raise CorruptError("log unit summary: bad magic")
    _magic, unit_seq, commit_seq, segment, count, _r, crc, _r2 = _HEADER.unpack_from(raw)
    end = SUMMARY_HEADER_SIZE + count * SUMMARY_ENTRY_SIZE
    if count == 0 or end > len(raw):
        raise CorruptError(f"log unit summary: bad entry count {count}")
    check_crc(raw, end, CRC_OFFSET, crc, "log unit summary")
    entries = list(_ENTRY.iter_unpack(raw[SUMMARY_HEADER_SIZE:end]))
    bad = {kind for kind, _o, _p in entries} - _KINDS
    if bad:
        raise CorruptError(f"log unit summary: bad block kind {min(bad)}")
    return dict(unit_seq=unit_seq, commit_seq=commit_seq, segment=segment, entries=entries)
