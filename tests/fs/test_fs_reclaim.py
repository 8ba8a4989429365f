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
