"""Copy-up granularity: a writable clone of an image holding a 256 MiB file shares all of it;
the first 4 KiB write into the clone copies that one block and one tree path, and the commit
after it is small.  Counted with the engine's own counters, not assumed."""
import stat

import numpy as np
import pytest

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.mkfs.geometry import make_filesystem

MIB = 1 << 20
FILE_MIB = 256
MIDDLE = 128 * MIB
SEED = 20240601
NEW = bytes(range(256)) * 16            # 4 KiB


def chunk(i):
    """MiB number i of the big file (cheap, reproducible, incompressible, no dedup)."""
    return np.random.default_rng([SEED, i]).bytes(MIB)


def counters(engine):
    return dict(engine.store.stats, blocks_written=engine.log.blocks_written)


def delta(before, after):
    return {k: after[k] - before[k] for k in before}


def tree_depth(engine, name):
    root = engine.tree(name).root
    return engine.store.load_node(C.TREE_FS, root)[0] + 1


@pytest.fixture(scope="module")
def big():
    """A 1 GiB device whose image b"base" holds /big (256 MiB), cloned into b"work"."""
    dev = MemoryDevice(bytearray(1 << 30))
    engine = make_filesystem(dev)
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
    ino = fs.mknod(C.ROOT_INO, b"big", stat.S_IFREG | 0o644).ino
    for i in range(FILE_MIB):
        fs.write(ino, i * MIB, chunk(i))
    fs.commit(image=b"base")
    engine.clone(b"base", b"work")
    engine.commit()
    yield dev, engine, ino
    engine.close()


def test_clone_shares_everything(big):
    dev, engine, ino = big
    base, work = engine.snapshot(b"base"), engine.snapshot(b"work")
    assert base["root"][1] == work["root"][1]
    assert engine.ca.get(base["root"][1])[1] >= 2          # held by both snapshots
    assert FileSystem(engine, b"work").getattr(ino).size == FILE_MIB * MIB


def test_copy_up_one_block(big):
    dev, engine, ino = big
    work = FileSystem(engine, b"work")
    depth = tree_depth(engine, b"work")
    assert depth >= 3                      # a real tree, or the bound below says nothing
    before = counters(engine)
    work.write(ino, MIDDLE, NEW)
    assert delta(before, counters(engine))["blocks_written"] == 0   # buffered until commit
    work.commit()
    d = delta(before, counters(engine))
    assert d["data_written"] == 1, d
    assert d["nodes_written"] <= 2 * depth + 2, (d, depth)

    image = FileSystem(engine, b"base", writable=False)
    old = chunk(MIDDLE // MIB)
    assert image.read(ino, MIDDLE, 4096) == old[:4096]
    assert work.read(ino, MIDDLE, 4096) == NEW
    # the neighbours of the copied block are still shared, unchanged
    assert work.read(ino, MIDDLE - 4096, 4096) == chunk(MIDDLE // MIB - 1)[-4096:]
    assert work.read(ino, MIDDLE + 4096, 8192) == old[4096:12288]

    # and so after a restart, for the whole file in both trees
    engine2 = Engine.open(MemoryDevice(dev.data))
    try:
        image, work = FileSystem(engine2, b"base", writable=False), FileSystem(engine2, b"work")
        for i in range(FILE_MIB):
            want = chunk(i)
            assert image.read(ino, i * MIB, MIB) == want, i
            if i == MIDDLE // MIB:
                want = NEW + want[4096:]
            assert work.read(ino, i * MIB, MIB) == want, i
    finally:
        engine2.close()


def test_commit_after_copy_up_is_small(big):
    dev, engine, ino = big
    work = FileSystem(engine, b"work")
    before = counters(engine)
    work.write(ino, MIDDLE + 64 * MIB, NEW[::-1])    # not NEW: that block is stored already
    work.commit()
    d = delta(before, counters(engine))
    assert d["data_written"] == 1, d
    assert d["blocks_written"] * engine.block_size < 65536, d
