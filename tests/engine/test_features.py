"""Feature bits: unknown ro_compat bits allow read-only opens only; unknown incompat none."""
import pytest

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.errors import UnsupportedError
from ctrfs.format.superblock import SUPERBLOCK_SIZE, decode_superblock, encode_superblock
from ctrfs.mkfs.geometry import make_filesystem


def with_superblock_bits(**bits):
    dev = MemoryDevice(bytearray(8 << 20))
    make_filesystem(dev, segment_blocks=16)
    sb = decode_superblock(dev.data[:SUPERBLOCK_SIZE])
    sb.update(bits)
    dev.data[:SUPERBLOCK_SIZE] = encode_superblock(sb)
    return dev.data


def test_unknown_ro_compat_bit_opens_read_only_only():
    data = with_superblock_bits(ro_compat=1 << 40)
    with pytest.raises(UnsupportedError, match="read-only"):
        Engine.open(MemoryDevice(data))
    eng = Engine.open(MemoryDevice(data, readonly=True))
    assert [n for n, _e in eng.snapshots()] == [b"@default"]


def test_unknown_incompat_bit_refuses_every_open():
    data = with_superblock_bits(incompat=1 << 40)
    for ro in (False, True):
        with pytest.raises(UnsupportedError, match="incompatible"):
            Engine.open(MemoryDevice(data, readonly=ro))
