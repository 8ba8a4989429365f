"""Superblock: round trip, size, CRC coverage, totality, refusals."""
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ctrfs.errors import CorruptError, UnsupportedError
from ctrfs.format import constants as C
from ctrfs.format.checksum import crc32c
from ctrfs.format.superblock import (CRC_OFFSET, HASH_ALGO_BLAKE3, SUPERBLOCK_SIZE, Superblock,
                                     decode_superblock, encode_superblock)
from formatcheck import (assert_flips_detected, check_struct, decodes_or_corrupt, field_offset, flipped,
                         from_struct)

U64 = st.integers(0, (1 << 64) - 1)


@st.composite
def superblocks(draw):
    """Valid superblocks: consistent geometry, known incompat bits, anything elsewhere."""
    seg = draw(st.integers(C.MIN_SEGMENT_BLOCKS, C.MAX_SEGMENT_BLOCKS))
    count = draw(st.integers(C.MIN_SEGMENTS, 1 << 24))
    device_blocks = C.FIRST_SEGMENT_BLOCK + count * seg + draw(st.integers(0, seg)) + 1
    return dict(
        magic=C.SUPERBLOCK_MAGIC, version=C.FORMAT_VERSION,
        block_size=draw(st.sampled_from([1 << n for n in range(12, 17)])),
        compat=draw(U64), ro_compat=draw(U64), incompat=draw(st.sampled_from([0, C.ALL_INCOMPAT])),
        uuid=draw(st.binary(min_size=16, max_size=16)),
        label=draw(st.binary(max_size=C.LABEL_MAX)).ljust(C.LABEL_MAX, b"\0"),
        segment_blocks=seg, reserved0=0, device_blocks=device_blocks,
        first_segment_block=C.FIRST_SEGMENT_BLOCK, segment_count=count,
        checkpoint_slot_a=C.CHECKPOINT_SLOTS[0], checkpoint_slot_b=C.CHECKPOINT_SLOTS[1],
        mirror_block=device_blocks - 1, created_ns=draw(U64), hash_algo=HASH_ALGO_BLAKE3)


SAMPLE = dict(magic=C.SUPERBLOCK_MAGIC, version=C.FORMAT_VERSION, block_size=4096, compat=0, ro_compat=0,
              incompat=C.ALL_INCOMPAT, uuid=bytes(range(16)), label=b"demo".ljust(64, b"\0"),
              segment_blocks=256, reserved0=0, device_blocks=16389, first_segment_block=4,
              segment_count=64, checkpoint_slot_a=1, checkpoint_slot_b=2, mirror_block=16388,
              created_ns=1_700_000_000_000_000_000, hash_algo=1)


def reseal(raw):
    """raw with a correct CRC (to get past the checksum to the field checks)."""
    raw = bytearray(raw[:SUPERBLOCK_SIZE])
    raw[CRC_OFFSET:] = crc32c(bytes(raw[:CRC_OFFSET])).to_bytes(4, "little")
    return bytes(raw)


@given(from_struct(Superblock))
def test_construct_round_trip(value):
    check_struct(Superblock, value, SUPERBLOCK_SIZE)
    assert CRC_OFFSET == field_offset(Superblock, "crc32c") == SUPERBLOCK_SIZE - 4


@given(superblocks())
@example(SAMPLE)
def test_encode_decode_round_trip(sb):
    raw = encode_superblock(sb)
    assert len(raw) == SUPERBLOCK_SIZE == 192
    assert raw[CRC_OFFSET:] == crc32c(raw[:CRC_OFFSET]).to_bytes(4, "little")
    out = decode_superblock(raw)
    assert out == {**sb, "crc32c": int.from_bytes(raw[CRC_OFFSET:], "little")}
    assert decode_superblock(raw + bytes(4096 - SUPERBLOCK_SIZE)) == out   # a whole block reads the same


def test_every_bit_flip_is_detected():
    raw = encode_superblock(SAMPLE)
    assert_flips_detected(decode_superblock, raw, 0, SUPERBLOCK_SIZE)


@given(superblocks(), st.integers(0, 8 * SUPERBLOCK_SIZE - 1))
def test_random_bit_flip_is_detected(sb, bit):
    with pytest.raises(CorruptError):
        decode_superblock(flipped(encode_superblock(sb), bit))


@given(st.binary(max_size=2 * SUPERBLOCK_SIZE))
def test_totality_arbitrary_bytes(raw):
    decodes_or_corrupt(decode_superblock, raw)


@given(st.binary(min_size=SUPERBLOCK_SIZE - 8, max_size=SUPERBLOCK_SIZE - 8))
def test_totality_past_the_checksum(body):
    # magic and CRC right, every other field arbitrary: only CorruptError may come out
    decodes_or_corrupt(decode_superblock, reseal(C.SUPERBLOCK_MAGIC + body))


@pytest.mark.parametrize("size", [0, 1, 8, SUPERBLOCK_SIZE - 1])
def test_truncated(size):
    with pytest.raises(CorruptError, match="truncated"):
        decode_superblock(encode_superblock(SAMPLE)[:size])


def test_wrong_magic():
    raw = reseal(b"EXT4\x00\x00SB" + encode_superblock(SAMPLE)[8:])
    with pytest.raises(CorruptError, match="bad superblock magic"):
        decode_superblock(raw)


def test_crc_mismatch_names_both_values():
    raw = bytearray(encode_superblock(SAMPLE))
    raw[60] ^= 1
    with pytest.raises(CorruptError, match=r"stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}"):
        decode_superblock(bytes(raw))


@pytest.mark.parametrize("bit", [1, 5, 63])
def test_unknown_incompat_feature_refused(bit):
    raw = encode_superblock({**SAMPLE, "incompat": C.ALL_INCOMPAT | 1 << bit})
    with pytest.raises(UnsupportedError, match=f"unknown incompatible features {1 << bit:#x}"):
        decode_superblock(raw)


def test_unknown_compat_and_ro_compat_bits_decode():
    # compat bits are ignored; ro_compat bits only restrict a read-write mount (the mounter's call)
    sb = {**SAMPLE, "compat": 1 << 40, "ro_compat": 1 << 3}
    assert decode_superblock(encode_superblock(sb))["ro_compat"] == 1 << 3


@pytest.mark.parametrize("version", [1, 3])
def test_other_version_refused(version):
    with pytest.raises(UnsupportedError, match=f"format version {version} is not supported: this ctrfs reads version 2"):
        decode_superblock(encode_superblock({**SAMPLE, "version": version}))


@pytest.mark.parametrize("field,value", [
    ("block_size", 4097), ("block_size", 2048), ("block_size", 1 << 17), ("block_size", 0),
    ("segment_blocks", 15), ("segment_blocks", 1 << 17), ("first_segment_block", 3),
    ("segment_count", 7), ("segment_count", 1 << 40), ("mirror_block", 16387),
    ("checkpoint_slot_a", 2), ("checkpoint_slot_b", 3), ("hash_algo", 2),
])
def test_bad_geometry(field, value):
    with pytest.raises(CorruptError, match="superblock: (bad|inconsistent)"):
        decode_superblock(encode_superblock({**SAMPLE, field: value}))
