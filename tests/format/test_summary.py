"""Log unit summaries: round trip against the construct reference, CRC coverage, totality."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.errors import CorruptError
from ctrfs.format import constants as C
from ctrfs.format.checksum import crc32c
from ctrfs.format.segment import (_HEADER, CRC_OFFSET, SUMMARY_ENTRY_SIZE, SUMMARY_HEADER_SIZE, Summary,
                                  SummaryEntry, SummaryHeader, decode_summary, encode_summary, max_entries)
from formatcheck import (assert_flips_detected, check_struct, decodes_or_corrupt, field_offset, flipped,
                         from_struct, plain)

U64 = st.integers(0, (1 << 64) - 1)
entries = st.tuples(st.sampled_from(C.BLOCK_KINDS), st.integers(0, 255), st.binary(min_size=32, max_size=32))


@st.composite
def units(draw):
    bs = draw(st.sampled_from([4096, 8192]))
    es = draw(st.lists(entries, min_size=1, max_size=max_entries(bs)))
    return draw(U64), draw(U64), draw(U64), es, bs


def sample():
    es = [(C.BLOCK_DATA, 0, bytes([i]) * 32) for i in range(10)] + [(C.BLOCK_NODE, C.TREE_FS, b"\xff" * 32)]
    return encode_summary(41, 7, 3, es, 4096), SUMMARY_HEADER_SIZE + len(es) * SUMMARY_ENTRY_SIZE


@given(from_struct(SummaryHeader))
def test_header_construct_round_trip_and_fast_struct_agree(value):
    raw = check_struct(SummaryHeader, value, SUMMARY_HEADER_SIZE)
    assert _HEADER.unpack(raw) == tuple(value[k] for k in (
        "magic", "unit_seq", "commit_seq", "segment", "count", "reserved", "crc32c", "reserved2"))
    assert CRC_OFFSET == field_offset(SummaryHeader, "crc32c")


@given(from_struct(SummaryEntry))
def test_entry_construct_round_trip(value):
    check_struct(SummaryEntry, value, SUMMARY_ENTRY_SIZE)


@given(units())
def test_encode_decode_agree_with_construct(unit):
    unit_seq, commit_seq, segment, es, bs = unit
    raw = encode_summary(unit_seq, commit_seq, segment, es, bs)
    assert len(raw) == bs
    got = decode_summary(raw)
    assert got == dict(unit_seq=unit_seq, commit_seq=commit_seq, segment=segment,
                       entries=[(k, o, h[:C.HASH_PREFIX_SIZE]) for k, o, h in es])
    ref = plain(Summary.parse(raw))
    assert ref["header"]["count"] == len(es)
    assert ref["header"]["reserved"] == ref["header"]["reserved2"] == 0
    assert [(e["kind"], e["owner"], e["hash_prefix"]) for e in ref["entries"]] == got["entries"]
    assert all(e["reserved"] == 0 for e in ref["entries"])
    end = SUMMARY_HEADER_SIZE + len(es) * SUMMARY_ENTRY_SIZE
    check = bytearray(raw[:end])
    check[CRC_OFFSET:CRC_OFFSET + 4] = bytes(4)
    assert ref["header"]["crc32c"] == crc32c(bytes(check))
    assert raw[end:] == bytes(bs - end)


def test_max_entries():
    assert max_entries(4096) == 253
    with pytest.raises(ValueError):
        encode_summary(1, 1, 0, [(C.BLOCK_DATA, 0, bytes(32))] * 254, 4096)
    with pytest.raises(ValueError):      # a unit has at least one block: decode refuses count 0
        encode_summary(1, 1, 0, [], 4096)


def test_every_bit_flip_in_checked_bytes_is_detected():
    raw, end = sample()
    assert_flips_detected(decode_summary, raw, 0, end)


def test_flips_after_the_entries_are_harmless():
    raw, end = sample()
    want = decode_summary(raw)
    for byte in (end, end + 1, 1000, 4095):
        for bit in range(8):
            assert decode_summary(flipped(raw, 8 * byte + bit)) == want


@given(units(), st.data())
def test_random_bit_flip_is_detected(unit, data):
    raw = encode_summary(*unit)
    end = SUMMARY_HEADER_SIZE + len(unit[3]) * SUMMARY_ENTRY_SIZE
    with pytest.raises(CorruptError):
        decode_summary(flipped(raw, data.draw(st.integers(0, 8 * end - 1))))


@given(st.binary(max_size=600))
def test_totality_arbitrary_bytes(raw):
    decodes_or_corrupt(decode_summary, raw)


@given(U64, U64, U64, st.integers(0, 300), st.binary(max_size=4096), st.booleans())
def test_totality_past_the_checksum(unit_seq, commit_seq, segment, count, rest, seal):
    raw = bytearray(_HEADER.pack(C.SUMMARY_MAGIC, unit_seq, commit_seq, segment, count, 0, 0, 0) + rest)
    end = SUMMARY_HEADER_SIZE + count * SUMMARY_ENTRY_SIZE
    if seal and end <= len(raw):
        raw[CRC_OFFSET:CRC_OFFSET + 4] = crc32c(bytes(raw[:end])).to_bytes(4, "little")
    decodes_or_corrupt(decode_summary, bytes(raw))


def sealed(count, entry_bytes, size=4096):
    raw = bytearray(size)
    raw[:SUMMARY_HEADER_SIZE] = _HEADER.pack(C.SUMMARY_MAGIC, 1, 1, 0, count, 0, 0, 0)
    raw[SUMMARY_HEADER_SIZE:SUMMARY_HEADER_SIZE + len(entry_bytes)] = entry_bytes
    end = SUMMARY_HEADER_SIZE + count * SUMMARY_ENTRY_SIZE
    raw[CRC_OFFSET:CRC_OFFSET + 4] = crc32c(bytes(raw[:end])).to_bytes(4, "little")
    return bytes(raw)


@pytest.mark.parametrize("raw,message", [
    (b"", "truncated: 0 bytes"),
    (C.SUMMARY_MAGIC + bytes(20), "truncated: 28 bytes"),
    (b"CTRFS\x00SB" + bytes(4088), "bad magic"),
    (sealed(0, b""), "bad entry count 0"),
    (sealed(300, b""), "bad entry count 300"),
    (sealed(1, bytes(16)), "bad block kind 0"),
    (sealed(1, bytes([9]) + bytes(15)), "bad block kind 9"),
])
def test_bad_summaries(raw, message):
    with pytest.raises(CorruptError, match=message):
        decode_summary(raw)
