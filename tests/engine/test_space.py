"""The cleaner and a full device: ENOSPC, never corruption; space comes back."""
import random
import stat

import numpy as np
import pytest

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.errors import NoSpaceError
from ctrfs.filesystem import FileSystem
from ctrfs.format.items import unpack_ca
from ctrfs.mkfs.geometry import make_filesystem

REG = stat.S_IFREG | 0o644


def recount_live(eng):
    """Live blocks per segment recomputed from the CA index and the system trees."""
    log = eng.log
    live = np.zeros(log.nsegs, dtype=np.int64)
    for _k, v in eng.ca.scan():
        live[log.seg_of(unpack_ca(v)[0])] += 1
    for tree in (eng.ca_tree, eng.snaps, eng.remap):
        for ptr, *_ in tree.walk_nodes():
            live[log.seg_of(ptr[0])] += 1
    for paddr in eng.ca.chain:
        live[log.seg_of(paddr)] += 1
    return live


def assert_usage_consistent(eng):
    assert (recount_live(eng) == eng.log.live).all()


@pytest.fixture
def small_fs():
    dev = MemoryDevice(bytearray(8 << 20))
    eng = make_filesystem(dev, segment_blocks=16)
    return dev, eng, FileSystem(eng, b"@default", dirty_limit=64 << 10)


def test_random_overwrites_force_cleaning_and_keep_data(small_fs):
    dev, eng, fs = small_fs
    rnd = random.Random(2)
    f = fs.mknod(1, b"big", REG)
    model = bytearray(rnd.randbytes(4 << 20))
    fs.write(f.ino, 0, bytes(model))
    fs.commit()
    for it in range(400):
        off = rnd.randrange(0, len(model) // 4096) * 4096
        blk = rnd.randbytes(4096)
        model[off:off + 4096] = blk
        fs.write(f.ino, off, blk)
        if it % 10 == 0:
            fs.commit()
            assert_usage_consistent(eng)
    fs.commit()
    assert getattr(eng, "stats_cleaned", 0) > 0, "the workload should have needed the cleaner"
    assert fs.read(f.ino, 0, len(model)) == model
    again = FileSystem(Engine.open(MemoryDevice(dev.data)), b"@default")
    assert again.read(f.ino, 0, len(model)) == model
    assert_usage_consistent(again.engine)


def test_full_device_gives_enospc_and_keeps_the_last_commit(small_fs):
    dev, eng, fs = small_fs
    rnd = random.Random(3)
    keep = rnd.randbytes(100_000)
    fs.write(fs.mknod(1, b"keep", REG).ino, 0, keep)
    fs.commit()
    with pytest.raises(NoSpaceError) as err:
        for n in range(1000):
            fs.write(fs.mknod(1, b"fill%d" % n, REG).ino, 0, rnd.randbytes(200_000))
            if n % 4 == 3:
                fs.commit()
    assert err.value.errno == 28
    reopened = FileSystem(Engine.open(MemoryDevice(bytearray(dev.data))), b"@default")
    assert reopened.read(reopened.lookup(1, b"keep"), 0, 1 << 20) == keep
    assert_usage_consistent(reopened.engine)
    for name, _ino, _c in list(reopened.readdir(1)):
        if name.startswith(b"fill"):
            reopened.unlink(1, name)
    for _ in range(3):    # a segment freed in commit S is reusable from commit S+2
        reopened.commit()
    assert reopened.engine.log.free_count() > reopened.engine.log.nsegs // 2
    big = rnd.randbytes(1_000_000)
    ino = reopened.mknod(1, b"again", REG).ino
    reopened.write(ino, 0, big)
    reopened.commit()
    assert reopened.read(ino, 0, 2_000_000) == big
    assert_usage_consistent(reopened.engine)
