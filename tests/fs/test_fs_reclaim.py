"""Commits the FS layer makes by itself (reclaiming space before a data flush) must be
consistent: every checkpoint maps the blocks of the inode sizes it records."""
import stat

from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C

ROOT = C.ROOT_INO


def test_reclaim_commits_map_the_data_they_describe(mounted):
    fs = FileSystem(mounted.engine, mounted.name, dirty_limit=4096)
    f = fs.mknod(ROOT, b"f", stat.S_IFREG | 0o644).ino
    g = fs.mknod(ROOT, b"g", stat.S_IFREG | 0o644).ino
    fs.write(f, 0, b"hello")                      # inline
    fs.write(g, 0, b"G" * 20000)
    fs.commit()
    engine = mounted.engine
    engine.clean_below = 1 << 30                  # as on a nearly full device: reclaim commits
    seq = engine.seq
    fs.write(f, 0, b"X" * 9000)                   # leaves inline mode, over the dirty limit
    fs.setattr(g, size=100)
    fs.write(g, 5000, b"g")
    fs.flush()
    assert engine.seq > seq                       # the FS layer did commit by itself
    fs = mounted.reopen()                         # a crash: no commit of our own
    assert fs.read(f, 0, 10000) == b"X" * 9000
    assert fs.read(g, 0, 10000) == b"G" * 100 + bytes(4900) + b"g"


def test_small_segments_rewrite_without_enospc():
    """A 2 MiB device of 16-block segments, a few files rewritten for many commits: the
    live data is a fraction of the device, so the cleaner must keep up (no ENOSPC), and
    the blocks it moves still read right through the tree and through an image."""
    import random

    from ctrfs.device import MemoryDevice
    from ctrfs.engine import Engine
    from ctrfs.mkfs.geometry import make_filesystem

    bs = 4096
    dev = MemoryDevice(bytearray(2 << 20))
    engine = make_filesystem(dev, segment_blocks=16)
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME, dirty_limit=8 * bs)
    rnd = random.Random(1)
    files = {}
    for i in range(6):
        ino = fs.mknod(ROOT, b"f%d" % i, stat.S_IFREG | 0o644).ino
        files[ino] = bytearray(rnd.randbytes(rnd.randrange(1, 12 * bs)))
        fs.write(ino, 0, files[ino])
    fs.commit(image=b"img")
    image_files = {k: bytes(v) for k, v in files.items()}
    moved = misses = 0
    try:
        for r in range(600):
            ino = rnd.choice(sorted(files))
            off, buf = rnd.randrange(12 * bs), rnd.randbytes(rnd.randrange(1, 3 * bs))
            fs.write(ino, off, buf)
            data = files[ino]
            data.extend(bytes(max(0, off - len(data))))
            data[off:off + len(buf)] = buf
            if rnd.random() < 0.3:
                size = rnd.randrange(12 * bs)
                fs.setattr(ino, size=size)
                del data[size:]
                data.extend(bytes(size - len(data)))
            if r % 3 == 0:
                fs.commit()
            if r % 100 == 99:
                fs.commit()
                moved += getattr(engine, "stats_cleaned", 0)
                misses += engine.store.stats["hint_misses"]
                engine.close()
                engine = Engine.open(MemoryDevice(dev.data))
                fs = FileSystem(engine, C.DEFAULT_TREE_NAME, dirty_limit=8 * bs)
            if r % 10 == 0:
                image = FileSystem(engine, b"img", writable=False)
                for k in files:
                    assert fs.read(k, 0, len(files[k]) + 5) == files[k], (r, k)
                    assert image.read(k, 0, len(image_files[k]) + 5) == image_files[k], (r, k)
    finally:
        engine.close()
    assert moved > 0 and misses > 0          # the cleaner did move blocks under the trees
