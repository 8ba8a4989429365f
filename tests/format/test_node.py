"""Tree nodes: round trip against LeafNode/InternalNode, the content hash (what it covers and
what it leaves out), CRC coverage, totality and malformed nodes."""
import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.errors import CorruptError
from ctrfs.format import constants as C
from ctrfs.format.checksum import crc32c
from ctrfs.format.items import block_key, fs_key
from ctrfs.format.node import (_HEADER, CRC_OFFSET, InternalItem, InternalNode, LeafItem, LeafNode, NodeHeader,
                               _parse_items, capacity, child_hashes, decode_node, encode_node, hash_of_block,
                               max_item)
from formatcheck import (assert_flips_detected, check_struct, decodes_or_corrupt, field_offset, flipped,
                         from_struct, plain)

BS = 4096
U64 = st.integers(0, (1 << 64) - 1)
HASH = st.binary(min_size=32, max_size=32)
POINTER_VALUE = st.builds(lambda p, h: p.to_bytes(8, "little") + h, U64, HASH)


def fs_items():
    """FS tree items: block items carry a pointer value, the rest arbitrary values."""
    block = st.tuples(st.builds(block_key, st.integers(0, 50), U64), POINTER_VALUE)
    other = st.tuples(st.builds(fs_key, st.integers(0, 50), st.sampled_from([0, 1, 2, 3]),
                                st.binary(max_size=24)), st.binary(max_size=64))
    return st.one_of(block, other)


@st.composite
def leaves(draw):
    tree = draw(st.sampled_from(C.TREE_KINDS))
    item = fs_items() if tree == C.TREE_FS else st.tuples(st.binary(max_size=40), st.binary(max_size=64))
    items = dict(draw(st.lists(item, min_size=1, max_size=25)))
    keys = sorted(items)
    return tree, 0, draw(U64), keys, [items[k] for k in keys]


@st.composite
def internals(draw):
    keys = sorted(set(draw(st.lists(st.binary(max_size=40), min_size=1, max_size=40))))
    vals = [(draw(U64), draw(HASH)) for _ in keys]
    return draw(st.sampled_from(C.TREE_KINDS)), draw(st.integers(1, 255)), draw(U64), keys, vals


nodes = st.one_of(leaves(), internals())


def reference_hash(tree, level, keys, vals):
    """The node address as spec/FORMAT.md states it, computed independently of node.py."""
    parts = [bytes((tree, level)), len(keys).to_bytes(2, "little")]
    for k, v in zip(keys, vals):
        if level:
            parts += [len(k).to_bytes(2, "little"), k, bytes(8), v[1]]
        else:
            if tree == C.TREE_FS and len(k) > 8 and k[8] == C.ITEM_BLOCK:
                v = bytes(8) + v[8:]
            parts += [len(k).to_bytes(2, "little"), len(v).to_bytes(2, "little"), k, v]
    return blake3.blake3(b"".join(parts), derive_key_context="ctrfs v2 tree node").digest()


def payload_end(block):
    return C.NODE_HEADER_SIZE + int.from_bytes(block[16:20], "little")


def seal(tree, level, nitems, payload, bs=BS, payload_len=None):
    """A node block with the given header fields and a correct CRC."""
    plen = len(payload) if payload_len is None else payload_len
    raw = bytearray(bs)
    raw[:C.NODE_HEADER_SIZE] = _HEADER.pack(C.NODE_MAGIC, tree, level, nitems, 1, plen, 0, bytes(8))
    raw[C.NODE_HEADER_SIZE:C.NODE_HEADER_SIZE + len(payload)] = payload
    end = min(C.NODE_HEADER_SIZE + plen, bs)
    raw[CRC_OFFSET:CRC_OFFSET + 4] = crc32c(bytes(raw[:end])).to_bytes(4, "little")
    return bytes(raw)


def leaf_payload(items):
    return b"".join(len(k).to_bytes(2, "little") + len(v).to_bytes(2, "little") + k + v for k, v in items)


# ---- structs and codecs -------------------------------------------------------------------
@given(from_struct(NodeHeader))
def test_header_construct_round_trip_and_fast_struct_agree(value):
    raw = check_struct(NodeHeader, value, C.NODE_HEADER_SIZE)
    assert _HEADER.unpack(raw) == tuple(value[sc.name] for sc in NodeHeader.subcons)
    assert CRC_OFFSET == field_offset(NodeHeader, "crc32c")


@given(st.binary(max_size=100), st.binary(max_size=100))
def test_leaf_item_construct_round_trip(key, value):
    item = dict(klen=len(key), vlen=len(value), key=key, value=value)
    raw = LeafItem.build(item)
    assert len(raw) == 4 + len(key) + len(value)
    assert plain(LeafItem.parse(raw)) == item


@given(st.binary(max_size=100), U64, HASH)
def test_internal_item_construct_round_trip(key, paddr, digest):
    item = dict(klen=len(key), key=key, child=dict(paddr=paddr, hash=digest))
    raw = InternalItem.build(item)
    assert len(raw) == 2 + len(key) + 40
    assert plain(InternalItem.parse(raw)) == item


@given(nodes)
def test_encode_decode_agree_with_construct(node):
    tree, level, gen, keys, vals = node
    block, digest = encode_node(tree, level, gen, keys, vals, BS)
    assert len(block) == BS
    assert decode_node(block) == (tree, level, gen, keys, vals)
    assert decode_node(block, expect_tree=tree)[3] == keys
    ref = LeafNode if level == 0 else InternalNode
    for parsed in (ref.parse(block), ref.compile().parse(block)):
        parsed = plain(parsed)
        hdr = parsed["header"]
        assert (hdr["tree"], hdr["level"], hdr["nitems"], hdr["generation"]) == (tree, level, len(keys), gen)
        assert hdr["reserved"] == bytes(8)
        assert [i["key"] for i in parsed["items"]] == keys
        if level == 0:
            assert [i["value"] for i in parsed["items"]] == vals
        else:
            assert [(i["child"]["paddr"], i["child"]["hash"]) for i in parsed["items"]] == vals
    end = payload_end(block)
    assert _parse_items(block, C.NODE_HEADER_SIZE, end, level, len(keys)) == (keys, vals)
    assert block[end:] == bytes(BS - end)
    check = bytearray(block[:end])
    check[CRC_OFFSET:CRC_OFFSET + 4] = bytes(4)
    assert block[CRC_OFFSET:CRC_OFFSET + 4] == crc32c(bytes(check)).to_bytes(4, "little")


# ---- the content hash ---------------------------------------------------------------------
@given(nodes, U64)
def test_hash_is_the_documented_one_and_ignores_generation(node, other_gen):
    tree, level, gen, keys, vals = node
    block, digest = encode_node(tree, level, gen, keys, vals, BS)
    assert digest == reference_hash(tree, level, keys, vals)
    assert encode_node(tree, level, other_gen, keys, vals, BS)[1] == digest
    assert encode_node(tree, level, gen, keys, vals, 8192)[1] == digest     # nor the block size
    assert hash_of_block(block) == digest


@given(nodes, U64)
def test_hash_ignores_paddr_hints(node, paddr):
    tree, level, gen, keys, vals = node
    digest = encode_node(tree, level, gen, keys, vals, BS)[1]
    if level:
        moved = [(paddr, h) for _p, h in vals]
    else:
        moved = [paddr.to_bytes(8, "little") + v[8:] if tree == C.TREE_FS and k[8:9] == b"\x05" else v
                 for k, v in zip(keys, vals)]
    assert encode_node(tree, level, gen, keys, moved, BS)[1] == digest


@given(leaves(), st.data())
def test_hash_covers_keys_and_values(node, data):
    tree, level, gen, keys, vals = node
    digest = encode_node(tree, level, gen, keys, vals, BS)[1]
    i = data.draw(st.integers(0, len(keys) - 1))
    v = vals[i]
    is_pointer = tree == C.TREE_FS and keys[i][8:9] == b"\x05"
    start = 8 if is_pointer else 0
    if len(v) > start:
        pos = data.draw(st.integers(start, len(v) - 1))
        changed = vals[:i] + [v[:pos] + bytes([v[pos] ^ 1]) + v[pos + 1:]] + vals[i + 1:]
        assert encode_node(tree, level, gen, keys, changed, BS)[1] != digest
    other_tree = data.draw(st.sampled_from([t for t in C.TREE_KINDS if t != tree]))
    if other_tree != C.TREE_FS and tree != C.TREE_FS:
        assert encode_node(other_tree, level, gen, keys, vals, BS)[1] != digest


def test_child_hashes():
    h1, h2 = b"\x01" * 32, b"\x02" * 32
    keys = [fs_key(2, C.ITEM_INODE), block_key(2, 0), block_key(2, 1)]
    vals = [bytes(64), (5).to_bytes(8, "little") + h1, (6).to_bytes(8, "little") + h2]
    assert child_hashes(C.TREE_FS, 0, keys, vals) == [h1, h2]
    assert child_hashes(C.TREE_CA, 0, [h1], [bytes(16)]) == []
    assert child_hashes(C.TREE_CA, 1, [b"a", b"b"], [(1, h1), (2, h2)]) == [h1, h2]


def test_capacity():
    assert capacity(4096) == 4064 and max_item(4096) == 2032
    with pytest.raises(ValueError):
        encode_node(C.TREE_CA, 0, 1, [b"k"], [bytes(4061)], BS)
    with pytest.raises(ValueError):
        encode_node(C.TREE_CA, 0, 1, [], [], BS)
    assert decode_node(encode_node(C.TREE_CA, 0, 1, [b"k"], [bytes(4059)], BS)[0])[4] == [bytes(4059)]


# ---- corruption -----------------------------------------------------------------------------
SAMPLES = [
    (C.TREE_FS, 0, 9, [fs_key(1, C.ITEM_INODE), block_key(1, 0), block_key(1, 7)],
     [bytes(range(64)), (100).to_bytes(8, "little") + b"\xaa" * 32, (101).to_bytes(8, "little") + b"\xbb" * 32]),
    (C.TREE_SNAP, 2, 9, [b"alpine", b"busybox"], [(200, b"\x11" * 32), (201, b"\x22" * 32)]),
]


@pytest.mark.parametrize("node", SAMPLES, ids=["fs-leaf", "internal"])
def test_every_bit_flip_in_checked_bytes_is_detected_and_tail_flips_are_harmless(node):
    block, _digest = encode_node(*node, BS)
    end = payload_end(block)
    assert_flips_detected(decode_node, block, 0, end)
    want = decode_node(block)
    for byte in list(range(end, end + 16)) + [2048, BS - 1]:
        for bit in range(8):
            assert decode_node(flipped(block, 8 * byte + bit)) == want


@given(nodes, st.data())
def test_random_bit_flip_detected_or_harmless(node, data):
    block, digest = encode_node(*node, BS)
    bad = flipped(block, data.draw(st.integers(0, 8 * BS - 1)))
    try:
        got = decode_node(bad)
    except CorruptError:
        return
    assert got == decode_node(block) and hash_of_block(bad) == digest


@given(st.binary(max_size=300))
def test_totality_arbitrary_bytes(raw):
    decodes_or_corrupt(decode_node, raw)


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 60), st.binary(max_size=600),
       st.one_of(st.none(), st.integers(0, BS)))
def test_totality_past_the_checksum(tree, level, nitems, payload, payload_len):
    decodes_or_corrupt(decode_node, seal(tree, level, nitems, payload, payload_len=payload_len))


@given(st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=12)), min_size=1, max_size=12),
       st.integers(0, 40))
def test_totality_of_well_framed_leaves(items, nitems):
    # a CRC-valid leaf whose items field is a valid frame: keys in any order, any count
    decodes_or_corrupt(decode_node, seal(C.TREE_CA, 0, nitems, leaf_payload(items)))


@pytest.mark.parametrize("raw,message", [
    (b"", "truncated: 0 bytes"),
    (C.NODE_MAGIC + bytes(27), "truncated: 31 bytes"),
    (b"CTNX" + bytes(BS - 4), "bad magic"),
    (seal(C.TREE_CA, 0, 0, b""), "bad payload length"),
    (seal(C.TREE_CA, 0, 1, b"", payload_len=BS), "bad payload length"),
    (seal(9, 0, 1, leaf_payload([(b"a", b"")])), "unexpected tree kind 9"),
    (seal(C.TREE_CA, 0, 2, leaf_payload([(b"b", b""), (b"a", b"")])), "keys out of order"),
    (seal(C.TREE_CA, 0, 2, leaf_payload([(b"a", b""), (b"a", b"")])), "keys out of order"),
    (seal(C.TREE_CA, 0, 2, leaf_payload([(b"a", b"")])), "items do not fill the payload"),  # into the tail
    (seal(C.TREE_CA, 0, 2, leaf_payload([(b"a", b"")]), bs=37), "items run past the payload"),  # off the end
    (seal(C.TREE_CA, 0, 1, leaf_payload([(b"a", b""), (b"b", b"")])), "items do not fill the payload"),
    (seal(C.TREE_CA, 1, 1, b"\x01\x00a" + bytes(20)), "items do not fill the payload"),
])
def test_malformed_nodes(raw, message):
    with pytest.raises(CorruptError, match=message):
        decode_node(raw)


def test_unexpected_tree_kind_for_the_caller():
    block = encode_node(C.TREE_CA, 0, 1, [b"k"], [b"v"], BS)[0]
    with pytest.raises(CorruptError, match="unexpected tree kind 2"):
        decode_node(block, expect_tree=C.TREE_FS)
