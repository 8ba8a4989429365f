"""ContentIndex.may_hold, the filter the import's block path asks before walking the CA
tree: never False for a hash the tree holds (a miss would store a block twice and split
its references), across CA log merges; and the import path still deduplicates against
blocks merged into the tree, the CA log and the uncommitted delta."""
import random
import stat

from hypothesis import given, settings
from hypothesis import strategies as st

from ctrfs.device import MemoryDevice
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.format.checksum import data_hash
from ctrfs.mkfs.geometry import make_filesystem

BS = 4096


def fresh():
    engine = make_filesystem(MemoryDevice(bytearray(32 << 20)), segment_blocks=64)
    engine.calog_limit = 40
    return engine, FileSystem(engine, C.DEFAULT_TREE_NAME)


def blocks(seed, n):
    rnd = random.Random(seed)
    return [rnd.randbytes(BS) for _ in range(n)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=6), st.integers(0, 1000))
def test_never_false_for_a_tree_key(rounds, seed):
    engine, fs = fresh()
    for r, n in enumerate(rounds):
        ino = fs.mknod(C.ROOT_INO, b"f%d" % r, stat.S_IFREG | 0o644).ino
        fs.write(ino, 0, b"".join(blocks(seed * 100 + r, n)))
        fs.commit()
        held = [bytes(k) for keys in engine.ca.tree.leaf_keys() for k in keys]
        if held:
            assert engine.ca.may_hold(held).all()
        strangers = [data_hash(b) for b in blocks(-seed - 1, 20)]
        assert not engine.ca.may_hold(strangers).any()    # 64-bit words: no chance collision
    engine.close()


def test_import_path_deduplicates_against_tree_log_and_delta():
    engine, fs = fresh()
    data = blocks(7, 60)
    ino = fs.mknod(C.ROOT_INO, b"a", stat.S_IFREG | 0o644).ino
    fs.write(ino, 0, b"".join(data[:40]))
    fs.commit()                                   # past the log limit: merged into the tree
    assert engine.ca.tree.root is not None and not engine.ca.logged
    ino = fs.mknod(C.ROOT_INO, b"b", stat.S_IFREG | 0o644).ino
    fs.write(ino, 0, b"".join(data[40:50]))
    fs.commit()                                   # in the CA log
    assert engine.ca.logged
    ino = fs.mknod(C.ROOT_INO, b"c", stat.S_IFREG | 0o644).ino
    fs.write_hashed(ino, 0, b"".join(data[50:]), [data_hash(b) for b in data[50:]])   # in the delta
    written = engine.store.stats["data_written"]
    ino = fs.mknod(C.ROOT_INO, b"all", stat.S_IFREG | 0o644).ino
    whole = b"".join(data)
    fs.write_hashed(ino, 0, whole, [data_hash(b) for b in data])
    assert engine.store.stats["data_written"] == written      # every block was found
    assert fs.read(ino, 0, len(whole)) == whole
    fs.commit()
    refs = {bytes(h): e for h, e in engine.ca.scan()}
    assert all(refs[data_hash(b)] for b in data)
    engine.close()
