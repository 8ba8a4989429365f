"""Checkpoint slot blocks: round trip, CRC coverage, the torn-write tail, totality, and the
reader's rule (both slots decoded, the highest valid seq wins)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.checkpoint import load_checkpoint
from ctrfs.errors import CorruptError
from ctrfs.format import constants as C
from ctrfs.format.checkpoint import (CHECKPOINT_SIZE, CRC_OFFSET, TAIL_SIZE, Checkpoint, RootSet,
                                     decode_checkpoint, encode_checkpoint)
from ctrfs.format.checksum import crc32c
from formatcheck import (assert_flips_detected, check_struct, decodes_or_corrupt, field_offset, flipped,
                         from_struct)

BLOCK_SIZES = st.sampled_from([4096, 8192, 65536])
checkpoints = from_struct(Checkpoint, crc32c=0, reserved=0)


def sample(seq=7):
    ptr = dict(paddr=seq * 10, hash=bytes([seq]) * 32)
    roots = dict(seq=seq, snap_root=ptr, ca_root=ptr, usage_root=ptr, remap_root=ptr, calog_root=ptr,
                 calog_entries=seq * 3)
    return dict(magic=C.CHECKPOINT_MAGIC, seq=seq, time_ns=123, roots=roots, log_segment=3,
                log_offset=17, next_unit_seq=99, live_blocks=1000, data_blocks=0, node_blocks=0,
                free_segments=5, snapshots=2, backups=[roots] * C.CHECKPOINT_BACKUPS,
                crc32c=0, reserved=0)


def fields(cp):
    return {k: v for k, v in cp.items() if k not in ("crc32c", "reserved")}


@given(from_struct(RootSet))
def test_rootset_construct_round_trip(value):
    check_struct(RootSet, value, 216)


@given(from_struct(Checkpoint))
def test_checkpoint_construct_round_trip(value):
    check_struct(Checkpoint, value, CHECKPOINT_SIZE)
    assert CHECKPOINT_SIZE == 960 and CRC_OFFSET == field_offset(Checkpoint, "crc32c") == 952


@given(checkpoints, BLOCK_SIZES)
def test_encode_decode_round_trip(cp, bs):
    raw = encode_checkpoint(cp, bs)
    assert len(raw) == bs
    assert raw[-TAIL_SIZE:] == cp["seq"].to_bytes(8, "little")
    assert raw[CHECKPOINT_SIZE:-TAIL_SIZE] == bytes(bs - CHECKPOINT_SIZE - TAIL_SIZE)
    assert raw[CRC_OFFSET:CRC_OFFSET + 4] == crc32c(raw[:CRC_OFFSET]).to_bytes(4, "little")
    assert fields(decode_checkpoint(raw)) == fields(cp)


def test_every_bit_flip_in_the_record_and_tail_is_detected():
    raw = encode_checkpoint(sample(), 4096)
    assert_flips_detected(decode_checkpoint, raw, 0, CRC_OFFSET + 4)     # CRC-covered + the CRC
    assert_flips_detected(decode_checkpoint, raw, 4096 - TAIL_SIZE, 4096)  # tail: torn


def test_flips_outside_checked_bytes_are_harmless():
    # the reserved word after the CRC and the zero gap are neither covered nor interpreted
    raw = encode_checkpoint(sample(), 4096)
    want = fields(decode_checkpoint(raw))
    for byte in list(range(CRC_OFFSET + 4, CHECKPOINT_SIZE)) + [CHECKPOINT_SIZE, 2000, 4096 - TAIL_SIZE - 1]:
        for bit in range(8):
            assert fields(decode_checkpoint(flipped(raw, 8 * byte + bit))) == want


@given(checkpoints, BLOCK_SIZES, st.data())
def test_random_bit_flip_in_checked_bytes_is_detected(cp, bs, data):
    raw = encode_checkpoint(cp, bs)
    byte = data.draw(st.one_of(st.integers(0, CRC_OFFSET + 3), st.integers(bs - TAIL_SIZE, bs - 1)))
    with pytest.raises(CorruptError):
        decode_checkpoint(flipped(raw, 8 * byte + data.draw(st.integers(0, 7))))


def test_torn_write_tail_mismatch():
    old, new = encode_checkpoint(sample(5), 4096), encode_checkpoint(sample(7), 4096)
    torn = new[:-TAIL_SIZE] + old[-TAIL_SIZE:]     # record landed, last sector did not
    with pytest.raises(CorruptError, match="checkpoint torn: seq 7 at head, 5 at tail"):
        decode_checkpoint(torn)


@pytest.mark.parametrize("cut", range(512, 4096, 512))
def test_torn_write_at_any_sector_boundary(cut):
    old, new = encode_checkpoint(sample(5), 4096), encode_checkpoint(sample(7), 4096)
    with pytest.raises(CorruptError):
        decode_checkpoint(new[:cut] + old[cut:])
    with pytest.raises(CorruptError):
        decode_checkpoint(old[:cut] + new[cut:])


@given(st.binary(max_size=1024))
def test_totality_arbitrary_bytes(raw):
    decodes_or_corrupt(decode_checkpoint, raw)


@given(st.binary(min_size=CRC_OFFSET - 8, max_size=CRC_OFFSET - 8), st.binary(min_size=16, max_size=16),
       st.booleans())
def test_totality_past_the_checksum(body, tail, same_seq):
    raw = bytearray(4096)
    raw[:CRC_OFFSET] = C.CHECKPOINT_MAGIC + body
    raw[CRC_OFFSET:CRC_OFFSET + 4] = crc32c(bytes(raw[:CRC_OFFSET])).to_bytes(4, "little")
    raw[-TAIL_SIZE:] = raw[8:16] if same_seq else tail[:8]
    decodes_or_corrupt(decode_checkpoint, bytes(raw))


@pytest.mark.parametrize("size", [0, 8, CHECKPOINT_SIZE, CHECKPOINT_SIZE + TAIL_SIZE - 1])
def test_truncated(size):
    with pytest.raises(CorruptError, match="truncated"):
        decode_checkpoint(encode_checkpoint(sample(), 4096)[:size])


def test_wrong_magic():
    raw = encode_checkpoint(sample(), 4096)
    with pytest.raises(CorruptError, match="bad magic"):
        decode_checkpoint(b"CTRFS\x00SB" + raw[8:])


class Slots:
    """Just enough device for load_checkpoint: block number -> bytes."""

    def __init__(self, a, b):
        self.blocks = dict(zip(C.CHECKPOINT_SLOTS, (a, b)))

    def read(self, blockno):
        return self.blocks[blockno]


def test_reader_takes_the_highest_valid_seq_and_falls_back():
    five, six = encode_checkpoint(sample(5), 4096), encode_checkpoint(sample(6), 4096)
    assert [cp["seq"] for cp in load_checkpoint(Slots(six, five), None)] == [6, 5]
    assert [cp["seq"] for cp in load_checkpoint(Slots(five, six), None)] == [6, 5]
    torn = six[:-TAIL_SIZE] + bytes(TAIL_SIZE)
    assert [cp["seq"] for cp in load_checkpoint(Slots(five, torn), None)] == [5]
    with pytest.raises(CorruptError, match="no valid checkpoint"):
        load_checkpoint(Slots(bytes(4096), torn), None)
