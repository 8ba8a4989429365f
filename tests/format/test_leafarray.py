"""Fixed-size leaves as arrays (format/leafarray.py): on every block, decode_fixed_leaf
either agrees with decode_node + block_digest (same keys, values, address) or declines
(None) — it never accepts a block decode_node refuses, and never raises."""
from hypothesis import example, given
from hypothesis import strategies as st

from ctrfs.errors import CorruptError
from ctrfs.format import constants as C
from ctrfs.format.items import block_key, fs_key
from ctrfs.format.leafarray import decode_fixed_leaf
from ctrfs.format.node import block_digest, decode_node, encode_node

BS = 4096
U64 = st.integers(0, (1 << 64) - 1)
HASH = st.binary(min_size=32, max_size=32)


@st.composite
def fixed_leaves(draw):
    """Leaves whose items share one key and one value length: block maps, CA entries,
    usage entries, and arbitrary ones (of any tree kind)."""
    shape = draw(st.sampled_from(["blocks", "ca", "usage", "any"]))
    n = draw(st.integers(1, 60))
    if shape == "blocks":
        ino = draw(st.integers(0, C.MAX_INO))
        idx = sorted(set(draw(st.lists(U64, min_size=1, max_size=n))))
        keys = [block_key(ino, i) for i in idx]
        vals = [draw(U64).to_bytes(8, "little") + draw(HASH) for _ in keys]
        return C.TREE_FS, keys, vals
    if shape == "ca":
        keys = sorted(set(draw(st.lists(HASH, min_size=1, max_size=n))))
        return C.TREE_CA, keys, [draw(st.binary(min_size=16, max_size=16)) for _ in keys]
    if shape == "usage":
        keys = sorted(set(i.to_bytes(8, "big") for i in draw(st.lists(U64, min_size=1, max_size=n))))
        return C.TREE_USAGE, keys, [draw(st.binary(min_size=24, max_size=24)) for _ in keys]
    klen, vlen = draw(st.integers(1, 20)), draw(st.integers(0, 20))
    keys = sorted(set(draw(st.lists(st.binary(min_size=klen, max_size=klen), min_size=1, max_size=n))))
    tree = draw(st.sampled_from(C.TREE_KINDS))
    return tree, keys, [draw(st.binary(min_size=vlen, max_size=vlen)) for _ in keys]


def reference(raw):
    try:
        tree, level, _gen, keys, vals = decode_node(raw)
    except CorruptError:
        return None
    return tree, level, [bytes(k) for k in keys], [bytes(v) for v in vals], block_digest(raw, tree, level, keys, vals)


@given(fixed_leaves(), U64)
def test_agrees_with_decode_node(leaf, gen):
    tree, keys, vals = leaf
    raw, digest = encode_node(tree, 0, gen, keys, vals, BS)
    got = decode_fixed_leaf(raw)
    assert got is not None
    assert (got.tree, got.keys(), got.vals(), got.digest) == (tree, keys, vals, digest)
    assert (got.first_key(), got.last_key(), len(got)) == (keys[0], keys[-1], len(keys))
    assert decode_fixed_leaf(raw, expect_tree=tree) is not None
    assert decode_fixed_leaf(raw, expect_tree=(tree % 5) + 1) is None


@given(fixed_leaves(), st.data())
def test_a_flipped_byte_is_declined_or_decoded_alike(leaf, data):
    tree, keys, vals = leaf
    raw = bytearray(encode_node(tree, 0, 7, keys, vals, BS)[0])
    pos = data.draw(st.integers(0, BS - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    raw = bytes(raw)
    got, want = decode_fixed_leaf(raw), reference(raw)
    if got is not None:
        assert want is not None and want[1] == 0
        assert (got.tree, got.keys(), got.vals(), got.digest) == (want[0], want[2], want[3], want[4])


@given(st.binary(max_size=200).map(lambda b: b.ljust(BS, b"\0")))
@example(b"CTND".ljust(BS, b"\0"))
def test_totality(raw):
    got = decode_fixed_leaf(raw)
    if got is not None:
        assert reference(raw) is not None


def test_mixed_and_internal_nodes_are_declined():
    mixed, _ = encode_node(C.TREE_FS, 0, 1, [fs_key(2, C.ITEM_INODE), block_key(2, 0)],
                           [bytes(64), bytes(40)], BS)
    internal, _ = encode_node(C.TREE_FS, 1, 1, [b"a", b"b"], [(5, bytes(32)), (6, bytes(32))], BS)
    assert decode_fixed_leaf(mixed) is None and decode_fixed_leaf(internal) is None
