"""The CA log: commits append changed CA entries to a chain of log blocks; past the limit a
commit merges them into the CA tree.  The CA view (tree overlaid by the log) must be the
same in memory, after a reopen, and across a merge; fsck must find nothing wrong."""
import random
import stat

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.mkfs.geometry import make_filesystem

LIMIT = 300


def reopened_view(dev):
    engine = Engine.open(MemoryDevice(bytearray(dev.data), readonly=True))
    try:
        return engine.ca.scan(), engine.ca.entries, list(engine.ca.chain)
    finally:
        engine.log.close()


def test_log_then_merge_past_the_limit(engine_problems):
    rnd = random.Random(3)
    dev = MemoryDevice(bytearray(32 << 20))
    engine = make_filesystem(dev, segment_blocks=64)
    engine.calog_limit = LIMIT
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
    inos = []
    logged = merged = 0
    for rounds in range(12):
        for _ in range(25):
            if inos and rnd.random() < 0.4:
                fs.write(rnd.choice(inos), rnd.randrange(3) * 4096, rnd.randbytes(4096))
            else:
                ino = fs.mknod(C.ROOT_INO, b"f%04d" % len(inos), stat.S_IFREG | 0o644).ino
                fs.write(ino, 0, rnd.randbytes(rnd.choice((2000, 9000))))
                inos.append(ino)
        before = engine.ca.entries
        fs.commit()
        ca = engine.ca
        assert ca.entries <= LIMIT
        assert len(ca.chain) <= ca.entries     # every block holds at least one entry
        if ca.chain:
            logged += 1
            assert ca.head[0] == ca.chain[0] and ca.entries > before
        elif before:
            merged += 1                 # the log was full: everything went into the CA tree
        view = ca.scan()
        assert reopened_view(dev) == (view, ca.entries, ca.chain)
        assert engine_problems(engine) == []
    assert logged and merged
    # a forced merge (the cleaner's, fsck's) leaves the same view and an empty log
    view = engine.ca.scan()
    engine.ca.force_merge = True
    engine.commit()
    assert engine.ca.chain == [] and engine.ca.entries == 0 and engine.ca.logged == {}
    assert engine.ca.scan() == view
    assert reopened_view(dev) == (view, 0, [])
    assert engine_problems(engine) == []
    engine.close()


def test_cleaning_a_segment_with_log_blocks_merges_the_log(engine_problems, monkeypatch):
    import ctrfs.cleaner as cleaner
    rnd = random.Random(4)
    dev = MemoryDevice(bytearray(16 << 20))
    engine = make_filesystem(dev, segment_blocks=16)
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
    for i in range(40):
        fs.write(fs.mknod(C.ROOT_INO, b"f%02d" % i, stat.S_IFREG | 0o644).ino, 0, rnd.randbytes(5000))
        if i % 10 == 9:
            fs.commit()
    assert engine.ca.chain
    view = engine.ca.scan()
    log = engine.log
    victim = next(s for s in map(log.seg_of, engine.ca.chain) if s != log.head_seg)
    monkeypatch.setattr(cleaner, "choose_victims", lambda log, limit: [victim])
    assert cleaner.clean(engine) == [victim] and engine.ca.force_merge
    engine.commit()
    counts = lambda v: [(h, e[8:]) for h, e in v]   # noqa: E731  (the cleaner moved blocks: paddrs differ)
    assert engine.ca.chain == [] and counts(engine.ca.scan()) == counts(view)
    assert log.live[victim] == 0 and log.state[victim] == C.SEG_FREE
    assert reopened_view(dev) == (engine.ca.scan(), 0, [])
    assert engine_problems(engine) == []
    engine.close()
