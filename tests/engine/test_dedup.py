"""Content addressing: equal blocks are stored once, in one tree or across trees; a tree
deleted leaves the others whole; deleting every tree that used some content gives its
space back (two commits on, as a freed segment is reusable from commit S+2)."""
import random
import stat

import numpy as np
import pytest

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem, init_tree
from ctrfs.format import constants as C
from ctrfs.format.items import unpack_ca
from ctrfs.mkfs.geometry import make_filesystem

BS = 4096
REG = stat.S_IFREG | 0o644


def ca_entries(engine):
    """{hash: (refcount, kind)} of the committed CA index."""
    return {bytes(k): unpack_ca(v)[1:] for k, v in engine.ca.scan()}


def data_entries(engine):
    return {h: ref for h, (ref, kind) in ca_entries(engine).items() if kind == C.BLOCK_DATA}


def new_tree(engine, name):
    engine.create_tree(name)
    init_tree(engine.tree(name))
    return FileSystem(engine, name)


@pytest.fixture
def fresh():
    dev = MemoryDevice(bytearray(8 << 20))
    engine = make_filesystem(dev, block_size=BS, segment_blocks=16)
    engine.commit()
    yield dev, engine
    engine.log.close()


def test_equal_blocks_in_one_file_and_across_trees_are_stored_once(fresh, engine_problems):
    dev, engine = fresh
    rnd = random.Random(1)
    blocks = [rnd.randbytes(BS) for _ in range(30)]
    content = b"".join(blocks + blocks[:10])        # the first 10 blocks twice in the file
    before = dict(engine.store.stats)
    a = new_tree(engine, b"a")
    b = new_tree(engine, b"b")
    b.mkdir(C.ROOT_INO, b"sub", 0o755)              # different inode numbers, different leaves
    fa = a.mknod(C.ROOT_INO, b"file", REG).ino
    fb = b.mknod(C.ROOT_INO, b"copy", REG).ino
    a.write(fa, 0, content)
    b.write(fb, 0, content)
    a.data.flush()
    b.commit()
    stats = {k: engine.store.stats[k] - before[k] for k in before}
    assert stats["data_written"] == 30
    assert stats["data_deduped"] == 2 * 40 - 30
    refs = data_entries(engine)
    assert len(refs) == 30
    first10 = {h for h in refs if refs[h] == 4}
    assert len(first10) == 10 and all(refs[h] == 2 for h in set(refs) - first10)
    assert engine_problems(engine) == []
    again = Engine.open(MemoryDevice(dev.data, readonly=True))
    for name, ino in ((b"a", fa), (b"b", fb)):
        assert FileSystem(again, name, writable=False).read(ino, 0, len(content)) == content


def test_delete_one_tree_keeps_the_other_then_both_give_space_back(fresh, engine_problems):
    dev, engine = fresh
    log = engine.log
    base_live, base_free, base_ca = int(log.live.sum()), log.free_count(), ca_entries(engine)
    rnd = random.Random(2)
    content = rnd.randbytes(200 * BS)               # ~13 segments of data, in both trees
    trees = {}
    for name in (b"a", b"b"):
        fs = new_tree(engine, name)
        ino = fs.mknod(C.ROOT_INO, b"data-" + name, REG).ino
        fs.write(ino, 0, content)
        fs.data.flush()
        trees[name] = ino
    engine.commit()
    assert len(data_entries(engine)) == 200
    assert int(log.live.sum()) >= base_live + 200

    engine.delete(b"a")
    engine.commit()
    assert engine_problems(engine) == []
    assert set(data_entries(engine).values()) == {1}
    reopened = Engine.open(MemoryDevice(bytearray(dev.data)))
    assert FileSystem(reopened, b"b", writable=False).read(trees[b"b"], 0, len(content)) == content
    assert engine.snapshot(b"a") is None

    engine.delete(b"b")
    for _ in range(3):                              # freed in S, reusable from S+2
        engine.commit()
    assert engine_problems(engine) == []
    assert ca_entries(engine) == base_ca
    assert data_entries(engine) == {}
    # Live blocks: the baseline again, give or take a node of each system tree (their
    # shape after growing and shrinking need not be the one they had).
    assert int(log.live.sum()) <= base_live + 3 + len(engine.ca.chain)   # + the CA log until merged
    # Segments: every one that holds nothing is free again, and reusable.
    holding = (log.live > 0) | (log.pinned > 0)
    idle_but_used = np.flatnonzero((log.state != C.SEG_FREE) & ~holding)
    assert set(idle_but_used) <= {log.head_seg}
    assert log.free_count() == int((log.state == C.SEG_FREE).sum()) >= base_free - int(holding.sum())
    assert FileSystem(engine, C.DEFAULT_TREE_NAME, writable=False).getattr(C.ROOT_INO).nlink == 2


def test_image_and_clone_share_until_changed(fresh, engine_problems):
    """An image and a writable clone of it share every block; changing one block of the
    clone stores one new data block and copies only the path to its leaf."""
    dev, engine = fresh
    rnd = random.Random(3)
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
    ino = fs.mknod(C.ROOT_INO, b"f", REG).ino
    content = bytearray(rnd.randbytes(64 * BS))
    fs.write(ino, 0, bytes(content))
    fs.commit(image=b"img")
    engine.clone(b"img", b"work")
    engine.commit()
    written = engine.store.stats["data_written"]
    nodes = engine.store.stats["nodes_written"]
    work = FileSystem(engine, b"work")
    new = rnd.randbytes(BS)
    work.write(ino, 5 * BS, new)
    work.commit()
    assert engine.store.stats["data_written"] - written == 1
    assert engine.store.stats["nodes_written"] - nodes <= 4     # leaf + parents, nothing else
    content[5 * BS:6 * BS] = new
    assert FileSystem(engine, b"work", writable=False).read(ino, 0, len(content)) == bytes(content)
    assert FileSystem(engine, b"img", writable=False).read(ino, 0, 2 * BS) == bytes(content[:2 * BS])
    assert engine_problems(engine) == []
