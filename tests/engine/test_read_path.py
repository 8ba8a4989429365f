"""The read path: runs of blocks read with one preadv into one buffer, every block checked
against its blake3 before its bytes are returned, and a block this mount has checked not
hashed again while its segment stays in the same use (VerifiedBlocks)."""
import errno
import random
import stat

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.errors import CorruptError, FsError
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.format.items import block_key
from ctrfs.mkfs.geometry import make_filesystem

BS = 4096


def committed_file(body, holes=()):
    """(device bytes, ino) of a committed file with body, the blocks in holes left zero."""
    dev = MemoryDevice(bytearray(8 << 20))
    engine = make_filesystem(dev, block_size=BS, segment_blocks=64)
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
    ino = fs.mknod(C.ROOT_INO, b"f", stat.S_IFREG | 0o644).ino
    for off in range(0, len(body), BS):
        if off // BS not in holes:
            fs.write(ino, off, body[off:off + BS])
    fs.setattr(ino, size=len(body))
    fs.commit()
    engine.log.close()
    return bytes(dev.data), ino


def opened(data):
    engine = Engine.open(MemoryDevice(bytearray(data)))
    return engine, FileSystem(engine, C.DEFAULT_TREE_NAME, writable=False)


def paddr_of(fs, ino, idx):
    return int.from_bytes(fs.tree.get(block_key(ino, idx))[:8], "little")


@given(st.data())
def test_any_range_reads_back(data):
    """Reads of any range, over holes and runs, give the file's bytes."""
    nblocks = data.draw(st.integers(1, 12))
    holes = set(data.draw(st.lists(st.integers(0, nblocks - 1), max_size=3)))
    body = bytearray(random.Random(nblocks).randbytes(nblocks * BS - 17))
    for h in holes:
        body[h * BS:(h + 1) * BS] = bytes(len(body[h * BS:(h + 1) * BS]))
    dev, ino = committed_file(bytes(body), holes)
    _engine, fs = opened(dev)
    for _ in range(3):
        off = data.draw(st.integers(0, len(body)))
        size = data.draw(st.integers(0, len(body) + BS))
        assert fs.read(ino, off, size) == body[off:off + size]


def test_corrupt_block_fails_the_read():
    body = random.Random(1).randbytes(6 * BS)
    dev, ino = committed_file(body)
    engine, fs = opened(dev)
    engine.dev.data[paddr_of(fs, ino, 3) * BS + 100] ^= 1
    with pytest.raises((CorruptError, FsError)) as err:
        fs.read(ino, 0, len(body))
    assert err.value.errno == errno.EIO
    assert fs.read(ino, 0, 3 * BS) == body[:3 * BS]


def test_verified_block_is_checked_again_once_its_segment_is_reused():
    """A checked block is not hashed on the next read; after its segment begins a new use
    (alloc_seq changes) it is checked again, so new bytes at the address are caught."""
    body = random.Random(2).randbytes(4 * BS)
    dev, ino = committed_file(body)
    engine, fs = opened(dev)
    assert fs.read(ino, 0, len(body)) == body              # checked, and remembered
    paddr = paddr_of(fs, ino, 1)
    engine.dev.data[paddr * BS] ^= 0xFF                     # changed behind the engine's back
    assert fs.read(ino, BS, BS)[1:] == body[BS + 1:2 * BS]  # not hashed again
    engine.log.alloc_seq[engine.log.seg_of(paddr)] += 1     # the segment's next use
    with pytest.raises((CorruptError, FsError)):
        fs.read(ino, BS, BS)


def test_verified_entry_needs_the_same_hash():
    """A stale hint (an older pointer naming the address for other content) is not taken
    for verified: the table keys on the hash as well."""
    body = random.Random(3).randbytes(2 * BS)
    dev, ino = committed_file(body)
    engine, fs = opened(dev)
    fs.read(ino, 0, len(body))
    store = engine.store
    paddr = np.array([paddr_of(fs, ino, 0)], dtype=np.uint64)
    good = np.frombuffer(fs.tree.get(block_key(ino, 0))[8:40], np.uint64).reshape(1, 4)
    assert store.verified.known(paddr, good).all()
    assert not store.verified.known(paddr, good ^ np.uint64(1)).any()


def test_few_block_and_array_reads_share_the_verified_table():
    """A read of a few blocks (one by one) and a longer one (as arrays) check blocks into,
    and skip them by, the same table; either path still catches a corrupt block."""
    from ctrfs.files import FEW
    n = FEW + 4
    body = random.Random(4).randbytes(n * BS)
    dev, ino = committed_file(body)
    engine, fs = opened(dev)
    store = engine.store
    words = lambda i: np.frombuffer(fs.tree.get(block_key(ino, i))[8:40], np.uint64).reshape(1, 4)  # noqa: E731
    assert fs.read(ino, 2 * BS, BS) == body[2 * BS:3 * BS]                 # one by one
    assert store.verified.known(np.array([paddr_of(fs, ino, 2)], dtype=np.uint64), words(2)).all()
    assert fs.read(ino, 0, len(body)) == body                              # as arrays
    h5 = words(5).tobytes()
    assert store.verified.known_one(paddr_of(fs, ino, 5), h5)
    assert not store.verified.known_one(paddr_of(fs, ino, 5), bytes(32))
    # a checked block changed behind the engine's back, in its segment's next use
    engine.dev.data[paddr_of(fs, ino, n - 1) * BS + 7] ^= 1
    engine.log.alloc_seq[engine.log.seg_of(paddr_of(fs, ino, n - 1))] += 1
    with pytest.raises((CorruptError, FsError)) as err:
        fs.read(ino, (n - 1) * BS, BS)
    assert err.value.errno == errno.EIO
