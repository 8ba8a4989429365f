"""constants.py: magics, kinds and tags are unique, masks cover the named bits."""
from ctrfs.format import constants as C


def values(prefix):
    return {name: getattr(C, name) for name in dir(C)
            if name.startswith(prefix) and isinstance(getattr(C, name), int)}


def test_magics_unique_and_not_prefixes_of_each_other():
    magics = [C.SUPERBLOCK_MAGIC, C.CHECKPOINT_MAGIC, C.SUMMARY_MAGIC, C.CALOG_MAGIC, C.NODE_MAGIC]
    assert len(set(magics)) == len(magics)
    for a in magics:
        for b in magics:
            assert a == b or not b.startswith(a), (a, b)


def test_whole_block_magics_are_8_bytes_node_magic_4():
    assert {len(m) for m in (C.SUPERBLOCK_MAGIC, C.CHECKPOINT_MAGIC, C.SUMMARY_MAGIC, C.CALOG_MAGIC)} == {8}
    assert len(C.NODE_MAGIC) == 4


def test_tree_kinds_unique_and_complete():
    trees = values("TREE_")
    assert len(set(trees.values())) == len(trees)
    assert sorted(C.TREE_KINDS) == sorted(trees.values())
    assert set(C.SYSTEM_TREES) == set(C.TREE_KINDS) - {C.TREE_FS}
    assert 0 not in C.TREE_KINDS          # 0 is "data" in a summary entry's owner byte


def test_block_kinds_unique_and_free_is_not_a_kind():
    blocks = values("BLOCK_")
    assert len(set(blocks.values())) == len(blocks)
    assert set(C.BLOCK_KINDS) == set(blocks.values()) - {C.BLOCK_FREE}


def test_item_types_unique_and_complete():
    items = values("ITEM_")
    assert len(set(items.values())) == len(items)
    assert sorted(C.ITEM_TYPES) == sorted(items.values())
    assert all(0 <= v < 256 for v in items.values())    # one key byte


def test_snapshot_kinds_and_segment_states_unique():
    for prefix, listed in (("SNAP_", C.SNAP_KINDS), ("SEG_", C.SEG_STATES)):
        named = {k: v for k, v in values(prefix).items() if not k.endswith(("_MAX", "_NAME"))}
        assert len(set(named.values())) == len(named), prefix
        assert sorted(listed) == sorted(named.values()), prefix


def test_hash_contexts_distinct():
    assert len({C.HASH_CONTEXT_DATA, C.HASH_CONTEXT_NODE, C.HASH_CONTEXT_CALOG}) == 3
    assert C.OWNER_CALOG not in C.TREE_KINDS and 0 < C.OWNER_CALOG < 256


def test_feature_masks():
    for prefix, everything in (("INCOMPAT_", C.ALL_INCOMPAT), ("RO_COMPAT_", C.ALL_RO_COMPAT)):
        bits = {k: v for k, v in values(prefix).items() if not k.endswith("_NONE")}
        assert len(set(bits.values())) == len(bits)
        mask = 0
        for bit in bits.values():
            assert bit and bit & (bit - 1) == 0, "feature flags are single bits"
            mask |= bit
        assert everything == mask, prefix
    assert C.ALL_COMPAT == 0


def test_geometry_constants_consistent():
    assert C.FIRST_SEGMENT_BLOCK > max(C.CHECKPOINT_SLOTS) > C.SUPERBLOCK_BLOCK
    assert len(set(C.CHECKPOINT_SLOTS)) == 2
    assert C.MIN_BLOCK_SIZE <= C.DEFAULT_BLOCK_SIZE <= C.MAX_BLOCK_SIZE
    assert C.MIN_SEGMENT_BLOCKS <= C.DEFAULT_SEGMENT_BLOCKS <= C.MAX_SEGMENT_BLOCKS
    assert C.HASH_PREFIX_SIZE < C.HASH_SIZE
