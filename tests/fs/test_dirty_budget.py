"""Trees sharing a daemon's dirty budget hold at most that many dirty bytes together: a
write over it flushes the trees that hold the most, another tree's included, and what
was flushed reads back (before, each tree had the whole limit to itself)."""
import stat

from ctrfs.device import MemoryDevice
from ctrfs.filesystem import FileSystem
from ctrfs.files import DirtyBudget
from ctrfs.format import constants as C
from ctrfs.mkfs.geometry import make_filesystem

BS = 4096
ROOT = C.ROOT_INO


def test_trees_share_one_dirty_budget():
    engine = make_filesystem(MemoryDevice(bytearray(16 << 20)), segment_blocks=64)
    engine.clone(C.DEFAULT_TREE_NAME, b"@other")
    budget = DirtyBudget(16 * BS)
    a = FileSystem(engine, C.DEFAULT_TREE_NAME, budget=budget)
    b = FileSystem(engine, b"@other", budget=budget)
    fa = a.mknod(ROOT, b"f", stat.S_IFREG | 0o644).ino
    fb = b.mknod(ROOT, b"f", stat.S_IFREG | 0o644).ino
    da, db = bytes(range(256)) * (12 * BS // 256), b"b" * (13 * BS)
    a.write(fa, 0, da)
    assert a.data.dirty_bytes == 12 * BS                      # under the budget: kept
    b.write(fb, 0, db)                                        # 24 blocks together: over it
    assert a.data.dirty_bytes + b.data.dirty_bytes <= 16 * BS
    assert b.data.dirty_bytes == 0 and a.data.dirty_bytes == 12 * BS   # the fuller one went
    for k in range(8):                                        # small writes to b: a goes too
        b.write(fb, 13 * BS + k * BS, b"c" * BS)
    assert a.data.dirty_bytes + b.data.dirty_bytes <= 16 * BS + BS
    assert a.data.dirty_bytes == 0
    assert a.read(fa, 0, len(da)) == da and b.read(fb, 0, len(db)) == db
    a.commit()
    b.commit()
    assert a.read(fa, 0, len(da)) == da
