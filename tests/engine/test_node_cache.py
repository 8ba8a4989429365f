"""The decoded-node cache is bounded by what its nodes cost in memory (a decoded block-map
leaf is 2-3x its 4 KiB block), not by a count of nodes: a read of a file whose block map
spans many leaves keeps the cache within cache_bytes, and its accounting exact."""
import stat

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.mkfs.geometry import make_filesystem
from ctrfs.store import node_cost


def test_cache_stays_within_its_bytes():
    img = bytearray(64 << 20)
    engine = make_filesystem(MemoryDevice(img), segment_blocks=64)
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
    ino = fs.mknod(C.ROOT_INO, b"f", stat.S_IFREG | 0o644).ino
    data = bytes(range(256)) * (16 << 12)                  # 16 MiB, 4096 blocks
    data = b"".join(i.to_bytes(4, "little") + data[i * 4096 + 4:(i + 1) * 4096] for i in range(4096))
    fs.write(ino, 0, data)
    fs.commit()
    engine.close()
    limit = 64 << 10
    engine = Engine.open(MemoryDevice(img), cache_bytes=limit)
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME, writable=False)
    assert fs.read(ino, 0, len(data)) == data
    store = engine.store
    assert len(store.cache) > 1
    assert store.cached == sum(node_cost(n) for n in store.cache.values())
    assert store.cached <= limit
