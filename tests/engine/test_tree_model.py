"""The CoW Merkle B+tree against a Python dict: put/delete/get/scan across commits,
reopens and many versions (images cloned from the tree) that must keep their content and
share every unchanged node with each other.  4 KiB nodes and item sizes up to the limit,
so leaves and internal nodes split and merge all the time."""
import random

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule, run_state_machine_as_test)

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.format import constants as C
from ctrfs.format.node import LEAF_ITEM_OVERHEAD, max_item
from ctrfs.mkfs.geometry import make_filesystem
from ctrfs.tree import Tree

BS = 4096
ITEM_MAX = max_item(BS) - LEAF_ITEM_OVERHEAD     # key + value bytes
NAME = b"t"
MAX_VERSIONS = 4


def fs_safe(key):
    """FS-tree leaves whose 9th key byte is ITEM_BLOCK carry block pointers: keep
    arbitrary test keys out of that shape."""
    if len(key) > 8 and key[8] == C.ITEM_BLOCK:
        key = key[:8] + bytes((C.ITEM_BLOCK + 1,)) + key[9:]
    return key


# Short keys collide often (updates, deletes of present keys); a shared prefix makes
# long runs of neighbours; a few long keys and big values force early splits.
keys = st.one_of(
    st.binary(min_size=1, max_size=3),
    st.binary(min_size=0, max_size=12).map(lambda b: b"prefix/" + b),
    st.binary(min_size=1, max_size=300),
).map(fs_safe)
values = st.one_of(st.binary(max_size=16), st.binary(max_size=400), st.integers(0, ITEM_MAX).map(lambda n: b"v" * n))


def fit(key, value):
    return value[:max(0, ITEM_MAX - len(key))]


def random_items(seed, n):
    rnd = random.Random(seed)
    out = {}
    for _ in range(n):
        k = fs_safe(rnd.randbytes(rnd.choice((2, 4, 8, 20, 60))))
        out[k] = rnd.randbytes(rnd.choice((0, 10, 50, 200, 900)))
    return out


def node_hashes(tree):
    return {ptr[1] for ptr, *_ in tree.walk_nodes()}


def height(tree):
    if tree.root is None:
        return 0
    level, _keys, _vals = tree._view(tree.root)
    return level + 1


class TreeMachine(RuleBasedStateMachine):
    """self.model: the tree now; self.committed: at the last commit; self.versions:
    image name -> content when it was cloned."""
    check = None                 # engine-level checker, set by the test function

    @initialize()
    def setup(self):
        self.dev = MemoryDevice(bytearray(16 << 20))
        self.engine = make_filesystem(self.dev, block_size=BS, segment_blocks=64)
        self.engine.create_tree(NAME)
        self.engine.commit()
        self.model, self.committed, self.versions = {}, {}, {}
        self.nversions = 0

    def teardown(self):
        if hasattr(self, "engine"):
            self.commit()
            assert type(self).check(self.engine) == []
            self.engine.log.close()

    @property
    def tree(self):
        return self.engine.tree(NAME)

    # ---- changes ----
    @rule(key=keys, value=values)
    def put(self, key, value):
        value = fit(key, value)
        self.tree.put(key, value)
        self.model[key] = value

    @rule(seed=st.integers(0, 2 ** 32), n=st.sampled_from((20, 100, 400)))
    def put_many(self, seed, n):
        for k, v in random_items(seed, n).items():
            self.tree.put(k, v)
            self.model[k] = v

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_present(self, data):
        key = data.draw(st.sampled_from(sorted(self.model)))
        assert self.tree.delete(key) is True
        del self.model[key]

    @precondition(lambda self: len(self.model) > 10)
    @rule(data=st.data(), frac=st.floats(0.2, 1.0))
    def delete_range(self, data, frac):
        """Delete a run of neighbours: whole leaves empty, siblings merge, the root shrinks."""
        ks = sorted(self.model)
        start = data.draw(st.integers(0, len(ks) - 1))
        for k in ks[start:start + max(1, int(len(ks) * frac))]:
            assert self.tree.delete(k) is True
            del self.model[k]

    @rule(key=keys)
    def delete_absent(self, key):
        assert self.tree.delete(key) is (key in self.model)
        self.model.pop(key, None)

    @rule()
    def bulk_reload(self):
        """bulk_load of the current content must not change it."""
        self.tree.bulk_load(sorted(self.model.items()))

    # ---- reads ----
    @rule(key=keys)
    def get(self, key):
        assert self.tree.get(key) == self.model.get(key)

    @rule(lo=keys, hi=st.one_of(st.none(), keys))
    def scan(self, lo, hi):
        got = [(bytes(k), bytes(v)) for k, v in self.tree.scan(lo, hi)]
        want = [(k, self.model[k]) for k in sorted(self.model) if k >= lo and (hi is None or k < hi)]
        assert got == want

    # ---- durability ----
    @rule()
    def commit(self):
        self.engine.commit()
        self.committed = dict(self.model)

    @rule()
    def reopen(self):
        """Engine.open on the same bytes: uncommitted changes are gone, committed ones kept."""
        self.engine.log.close()
        self.engine = Engine.open(self.dev)
        self.model = dict(self.committed)

    # ---- versions ----
    @rule()
    def snapshot(self):
        """Commit and keep the tree as an image; old images beyond a few are deleted."""
        self.commit()
        self.nversions += 1
        name = b"v%d" % self.nversions
        self.engine.clone(NAME, name, C.SNAP_IMAGE, totals=(0, 0))   # not an FS tree: nothing to count
        self.versions[name] = dict(self.committed)
        if len(self.versions) > MAX_VERSIONS:
            old = min(self.versions, key=lambda n: int(n[1:]))
            self.engine.delete(old)
            del self.versions[old]
        self.commit()
        mine = Tree(self.engine.store, C.TREE_FS, self.engine.snapshot(name)["root"])
        assert mine.root == self.tree.root, "a fresh image is the tree's root itself"

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def delete_version(self, data):
        name = data.draw(st.sampled_from(sorted(self.versions)))
        self.engine.delete(name)
        del self.versions[name]
        self.commit()

    @rule(key=keys, value=values)
    def small_change_shares_nodes(self, key, value):
        """One put and a commit rewrite at most the path to one leaf (plus what a split or
        a new root adds): every other node is shared with the version before."""
        self.commit()
        before = node_hashes(self.tree)
        h = height(self.tree)
        self.put(key, value)
        self.commit()
        after = node_hashes(self.tree)
        note(f"height {h}, nodes {len(before)} -> {len(after)}, new {len(after - before)}")
        assert len(after - before) <= 2 * h + 1
        assert len(before - after) <= 2 * h + 1     # and all but that path is still shared

    @invariant()
    def versions_unchanged(self):
        if not hasattr(self, "engine"):
            return
        for name, want in self.versions.items():
            e = self.engine.snapshot(name)
            img = Tree(self.engine.store, C.TREE_FS, e["root"])
            assert {bytes(k): bytes(v) for k, v in img.scan()} == want, name

    @invariant()
    def size_matches(self):
        if hasattr(self, "engine"):
            assert sum(1 for _ in self.tree.scan()) == len(self.model)


def test_tree_against_dict(engine_problems):
    TreeMachine.check = staticmethod(engine_problems)
    run_state_machine_as_test(TreeMachine, settings=settings(stateful_step_count=40))


# ---- bulk load ---------------------------------------------------------------------------------
def fresh_engine():
    dev = MemoryDevice(bytearray(16 << 20))
    return dev, make_filesystem(dev, block_size=BS, segment_blocks=64)


@given(items=st.dictionaries(keys, values, max_size=300), extra=st.integers(0, 3000), seed=st.integers(0, 99))
def test_bulk_load_equals_sequential_puts(items, extra, seed, engine_problems):
    items = {k: fit(k, v) for k, v in items.items()}
    items.update(random_items(seed, extra))
    dev, engine = fresh_engine()
    engine.create_tree(b"bulk")
    engine.create_tree(b"seq")
    engine.tree(b"bulk").put(b"old", b"replaced by the load")
    engine.commit()
    engine.tree(b"bulk").bulk_load(sorted(items.items()))
    order = list(items)
    random.Random(seed).shuffle(order)
    seq = engine.tree(b"seq")
    for k in order:
        seq.put(k, items[k])
    engine.commit()
    engine.log.close()
    again = Engine.open(dev)
    want = sorted(items.items())
    for name in (b"bulk", b"seq"):
        assert [(bytes(k), bytes(v)) for k, v in again.tree(name).scan()] == want
        for k in order[:50]:
            assert again.tree(name).get(k) == items[k]
    assert engine_problems(again) == []


def test_bulk_load_packs_nodes_full():
    """Sorted input fills each node to capacity: far fewer nodes than random inserts."""
    dev, engine = fresh_engine()
    items = sorted(random_items(7, 5000).items())
    engine.create_tree(b"bulk")
    engine.create_tree(b"seq")
    engine.tree(b"bulk").bulk_load(items)
    shuffled = list(items)
    random.Random(1).shuffle(shuffled)
    for k, v in shuffled:
        engine.tree(b"seq").put(k, v)
    engine.commit()
    nb = len(node_hashes(engine.tree(b"bulk")))
    ns = len(node_hashes(engine.tree(b"seq")))
    assert nb < ns
    engine.log.close()


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_trees(n):
    dev, engine = fresh_engine()
    engine.create_tree(NAME)
    tree = engine.tree(NAME)
    for i in range(n):
        tree.put(bytes([i + 1]), b"x")
    engine.commit()
    assert [bytes(k) for k, _ in Engine.open(dev).tree(NAME).scan()] == [bytes([i + 1]) for i in range(n)]
    for i in range(n):
        assert tree.delete(bytes([i + 1]))
    engine.commit()
    assert engine.snapshot(NAME)["root"][0] == 0
    engine.log.close()
