"""Dedup across snapshots, counted in the content-address index: two images holding the same
files share every data block; a third with one changed block adds exactly one."""
import collections
import random
import stat


from ctrfs.filesystem import FileSystem, init_tree
from ctrfs.format import constants as C
from ctrfs.format.checksum import data_hash
from ctrfs.format.items import unpack_ca
from ctrfs.format.pointer import unpack_pointer

BS = 4096
ROOT = C.ROOT_INO


def files():
    """name -> content: sizes across block boundaries, one tail-only file, a duplicate."""
    rnd = random.Random(4)
    out = {b"f%d" % i: rnd.randbytes(rnd.choice([2 * BS, 3 * BS + 1, 10 * BS - 7, 40 * BS]))
           for i in range(8)}
    out[b"copy"] = out[b"f1"]                      # deduped inside one snapshot too
    out[b"small"] = b"s" * 100                     # inline: no data block at all
    out[b"sparse"] = None                          # holes only, written below
    return out


def expected_hashes():
    """The distinct data blocks the files need (tails zero-padded; equal blocks once)."""
    return {data_hash(d[i:i + BS].ljust(BS, b"\0")) for d in files().values()
            if d is not None and len(d) > C.INLINE_MAX for i in range(0, len(d), BS)}


def populate(fs):
    d = fs.mkdir(ROOT, b"dir", 0o755).ino
    for name, data in files().items():
        ino = fs.mknod(d, name, stat.S_IFREG | 0o644).ino
        if data is None:
            fs.setattr(ino, size=64 * BS)
            fs.write(ino, 30 * BS, b"\0" * BS)     # zeros written: still a hole
        else:
            fs.write(ino, 0, data)


def reachable_nodes(engine, names):
    """hash -> (level, keys, vals) of every FS node reachable from the named snapshots."""
    nodes = {}
    for name in names:
        stack = [engine.snapshot(name)["root"]]
        while stack:
            ptr = stack.pop()
            if ptr[0] == 0 or ptr[1] in nodes:
                continue
            nodes[ptr[1]] = node = engine.store.load_node(C.TREE_FS, ptr)
            if node[0] > 0:
                stack.extend(node[2])
    return nodes


def leaf_data_pointers(nodes):
    """Counter: data hash -> stored leaves' pointers to it (each distinct node once)."""
    refs = collections.Counter()
    for level, keys, vals in nodes.values():
        if level == 0:
            for k, v in zip(keys, vals):
                if k[8] == C.ITEM_BLOCK:
                    refs[unpack_pointer(v)[1]] += 1
    return refs


def data_hashes(engine, name):
    return set(leaf_data_pointers(reachable_nodes(engine, [name])))


def ca_data_entries(engine):
    """The data blocks the CA index holds (read from the committed CA tree)."""
    return {bytes(k) for k, v in engine.ca.scan() if unpack_ca(v)[2] == C.BLOCK_DATA}


def check_refcounts(engine):
    """Every CA count equals the pointers to it from stored nodes plus snapshot roots."""
    names = [n for n, _e in engine.snapshots()]
    nodes = reachable_nodes(engine, names)
    want = leaf_data_pointers(nodes)
    for level, _keys, vals in nodes.values():
        if level > 0:
            want.update(p[1] for p in vals)
    want.update(e["root"][1] for _n, e in engine.snapshots() if e["root"][0])
    for h in set(want) | set(nodes):
        assert engine.ca.get(h)[1] == want[h], h.hex()[:16]
    assert ca_data_entries(engine) == set(leaf_data_pointers(nodes))


def test_equal_snapshots_share_every_data_block(mounted):
    engine = mounted.engine
    populate(mounted.fs)
    mounted.fs.commit(image=b"one")
    one = data_hashes(engine, b"one")
    assert one == expected_hashes()
    entries = ca_data_entries(engine)
    assert one <= entries

    # an independent tree written from scratch with the same files
    engine.create_tree(b"other")
    init_tree(engine.tree(b"other"))
    other = FileSystem(engine, b"other")
    before = dict(engine.store.stats)
    populate(other)
    other.commit(image=b"two")
    assert engine.store.stats["data_written"] == before["data_written"]
    assert engine.store.stats["data_deduped"] - before["data_deduped"] == sum(
        -(-len(d) // BS) for d in files().values() if d is not None and len(d) > C.INLINE_MAX)
    assert data_hashes(engine, b"two") == one
    assert ca_data_entries(engine) == entries            # nothing new in the index
    check_refcounts(engine)

    # a third image: a clone of the second with one block changed
    engine.clone(b"two", b"three-work")
    three = FileSystem(engine, b"three-work")
    ino = three.lookup(three.lookup(ROOT, b"dir"), b"f3")
    old_block = three.read(ino, 2 * BS, BS)
    before = dict(engine.store.stats)
    three.write(ino, 2 * BS + 100, b"changed")
    three.commit(image=b"three")
    assert engine.store.stats["data_written"] - before["data_written"] == 1
    after = ca_data_entries(engine)
    assert len(after - entries) == 1 and entries <= after    # the old block is still in "one"/"two"
    new_set = data_hashes(engine, b"three")
    assert len(new_set - one) == 1
    assert three.read(ino, 2 * BS, BS) == old_block[:100] + b"changed" + old_block[107:]
    check_refcounts(engine)

    # deleting the images that hold the old block keeps it only while one still does
    for name in (b"two", b"one", b"@default", b"other"):
        engine.delete(name)
        engine.commit()
        check_refcounts(engine)
    assert ca_data_entries(engine) == data_hashes(engine, b"three")
