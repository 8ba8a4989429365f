"""CA log blocks: round trip against the construct reference, CRC coverage, totality."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.errors import CorruptError
from ctrfs.format import constants as C
from ctrfs.format.calog import (_ENTRY, _HEADER, CALOG_ENTRY_SIZE, CALOG_HEADER_SIZE, CRC_OFFSET, CalogEntry,
                                CalogHeader, calog_capacity, decode_calog, encode_calog)
from ctrfs.format.checksum import crc32c
from formatcheck import assert_flips_detected, check_struct, decodes_or_corrupt, field_offset, flipped, from_struct

U64 = st.integers(0, (1 << 64) - 1)
entries = st.tuples(st.binary(min_size=32, max_size=32), U64, st.integers(0, (1 << 32) - 1), st.integers(0, 255))


@st.composite
def blocks(draw):
    bs = draw(st.sampled_from([4096, 8192]))
    es = draw(st.lists(entries, min_size=1, max_size=calog_capacity(bs)))
    return draw(U64), draw(st.binary(min_size=32, max_size=32)), es, bs


def sample():
    es = [(bytes([i]) * 32, 100 + i, i, C.BLOCK_DATA) for i in range(10)] + [(b"\xff" * 32, 0, 0, 0)]
    return encode_calog(77, b"\x07" * 32, es, 4096), CALOG_HEADER_SIZE + len(es) * CALOG_ENTRY_SIZE


@given(from_struct(CalogHeader))
def test_header_construct_round_trip_and_fast_struct_agree(value):
    raw = check_struct(CalogHeader, value, CALOG_HEADER_SIZE)
    assert _HEADER.unpack(raw) == tuple(value[k] for k in (
        "magic", "prev_paddr", "prev_hash", "count", "crc32c", "reserved"))
    assert CRC_OFFSET == field_offset(CalogHeader, "crc32c")


@given(from_struct(CalogEntry, reserved=bytes(3)))
def test_entry_construct_round_trip_and_fast_struct_agree(value):
    raw = check_struct(CalogEntry, value, CALOG_ENTRY_SIZE)
    assert _ENTRY.unpack(raw) == (value["hash"], value["paddr"], value["refcount"], value["kind"])


@given(blocks())
def test_encode_decode_round_trip(block):
    prev_paddr, prev_hash, es, bs = block
    raw = encode_calog(prev_paddr, prev_hash, es, bs)
    assert len(raw) == bs
    assert decode_calog(raw) == dict(prev_paddr=prev_paddr, prev_hash=prev_hash, entries=es)
    hdr = CalogHeader.parse(raw[:CALOG_HEADER_SIZE])
    assert hdr.count == len(es) and hdr.reserved == 0
    end = CALOG_HEADER_SIZE + len(es) * CALOG_ENTRY_SIZE
    assert raw[end:] == bytes(bs - end)


def test_capacity():
    assert calog_capacity(4096) == 84
    with pytest.raises(ValueError):
        encode_calog(0, bytes(32), [(bytes(32), 1, 1, 1)] * 85, 4096)
    with pytest.raises(ValueError):
        encode_calog(0, bytes(32), [], 4096)


def test_every_bit_flip_in_checked_bytes_is_detected():
    raw, end = sample()
    assert_flips_detected(decode_calog, raw, 0, end)


def test_flips_after_the_entries_are_harmless():
    raw, end = sample()
    want = decode_calog(raw)
    for byte in (end, end + 1, 1000, 4095):
        for bit in range(8):
            assert decode_calog(flipped(raw, 8 * byte + bit)) == want


@given(st.binary(max_size=600))
def test_totality_arbitrary_bytes(raw):
    decodes_or_corrupt(decode_calog, raw)


@given(U64, st.integers(0, 200), st.binary(max_size=4096), st.booleans())
def test_totality_past_the_checksum(prev, count, rest, seal):
    raw = bytearray(_HEADER.pack(C.CALOG_MAGIC, prev, bytes(32), count, 0, 0) + rest)
    end = CALOG_HEADER_SIZE + count * CALOG_ENTRY_SIZE
    if seal and end <= len(raw):
        raw[CRC_OFFSET:CRC_OFFSET + 4] = crc32c(bytes(raw[:end])).to_bytes(4, "little")
    decodes_or_corrupt(decode_calog, bytes(raw))


@pytest.mark.parametrize("raw,message", [
    (b"", "truncated: 0 bytes"),
    (b"CTRFS\x00LS" + bytes(4088), "bad magic"),
    (_HEADER.pack(C.CALOG_MAGIC, 0, bytes(32), 0, 0, 0) + bytes(4032), "bad entry count 0"),
    (_HEADER.pack(C.CALOG_MAGIC, 0, bytes(32), 90, 0, 0) + bytes(4032), "bad entry count 90"),
    (_HEADER.pack(C.CALOG_MAGIC, 0, bytes(32), 1, 0, 0) + bytes(4032), "CRC mismatch"),
])
def test_bad_blocks(raw, message):
    with pytest.raises(CorruptError, match=message):
        decode_calog(raw)
