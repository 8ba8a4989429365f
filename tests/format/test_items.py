"""Tree item values and keys: construct structs against the fast pack_/unpack_ codecs, size
pins, key layout and order, and the codecs' refusals."""
import blake3
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ctrfs.errors import CorruptError
from ctrfs.format import constants as C
from ctrfs.format import items as I
from formatcheck import check_struct, decodes_or_corrupt, from_struct

U64 = st.integers(0, (1 << 64) - 1)
INODE_FIELDS = [sc.name for sc in I.InodeRecord.subcons]


@given(from_struct(I.InodeRecord), st.binary(max_size=C.INLINE_MAX))
def test_inode_record(value, inline):
    raw = check_struct(I.InodeRecord, value, I.INODE_SIZE)
    fields = tuple(value[name] for name in INODE_FIELDS)
    assert I.pack_inode(*fields) == raw
    assert I.pack_inode(*fields, inline=inline) == raw + inline
    assert I.unpack_inode(raw + inline) == (fields, inline)


@given(from_struct(I.DirentValue))
def test_dirent_value(value):
    raw = check_struct(I.DirentValue, value, I.DIRENT_SIZE)
    assert I.pack_dirent(value["ino"], value["dtype"]) == raw
    assert I.unpack_dirent(raw) == (value["ino"], value["dtype"])


@given(from_struct(I.CAEntry))
def test_ca_entry(value):
    raw = check_struct(I.CAEntry, value, I.CA_ENTRY_SIZE)
    assert raw[13:] == bytes(3)
    assert I.pack_ca(value["paddr"], value["refcount"], value["kind"]) == raw
    assert I.unpack_ca(raw) == (value["paddr"], value["refcount"], value["kind"])


@given(from_struct(I.UsageEntry))
def test_usage_entry(value):
    raw = check_struct(I.UsageEntry, value, I.USAGE_ENTRY_SIZE)
    fields = (value["state"], value["live"], value["alloc_unit_seq"], value["freed_seq"])
    assert I.pack_usage(*fields) == raw
    assert I.unpack_usage(raw) == fields


@given(from_struct(I.SnapEntry, kind=st.sampled_from(C.SNAP_KINDS)), st.binary(max_size=C.SNAP_NAME_MAX))
def test_snap_entry(value, parent_name):
    raw = check_struct(I.SnapEntry, value, I.SNAP_ENTRY_SIZE)
    root = (value["root"]["paddr"], value["root"]["hash"])
    packed = I.pack_snap(value["kind"], value["created_ns"], root, value["parent_root"],
                         value["logical_bytes"], value["inodes"], parent_name)
    assert packed == raw + parent_name
    assert I.unpack_snap(packed) == dict(kind=value["kind"], created_ns=value["created_ns"], root=root,
                                         parent_root=value["parent_root"], logical_bytes=value["logical_bytes"],
                                         inodes=value["inodes"], parent_name=parent_name)


@given(from_struct(I.RemapEntry))
def test_remap_entry(value):
    check_struct(I.RemapEntry, value, I.REMAP_ENTRY_SIZE)


@given(from_struct(I.SuperValue))
def test_super_value(value):
    raw = check_struct(I.SuperValue, value, I.SUPER_SIZE)
    assert raw[:8] == value["next_ino"].to_bytes(8, "little")     # what inodes.allocate reads


def test_block_entry_is_a_pointer():
    assert I.BlockEntry.sizeof() == I.BLOCK_ENTRY_SIZE == 40


# ---- refusals and totality ---------------------------------------------------------------------
@pytest.mark.parametrize("unpack,raw,message", [
    (I.unpack_inode, bytes(63), "inode item: 63 bytes, want >= 64"),
    (I.unpack_dirent, bytes(8), "dirent item: 8 bytes, want 9"),
    (I.unpack_dirent, bytes(10), "dirent item: 10 bytes, want 9"),
    (I.unpack_ca, bytes(15), "content-address entry: 15 bytes, want 16"),
    (I.unpack_usage, bytes(25), "usage entry: 25 bytes, want 24"),
    (I.unpack_snap, bytes(103), "snapshot entry: 103 bytes"),
    (I.unpack_snap, bytes(104 + 256), "snapshot entry: 360 bytes"),
    (I.unpack_snap, bytes(104), "snapshot entry: bad kind 0"),
    (I.split_fs_key, bytes(8), "FS tree: malformed key"),
    (I.split_fs_key, bytes(8) + b"\x09", "FS tree: malformed key"),
])
def test_refusals(unpack, raw, message):
    with pytest.raises(CorruptError, match=message):
        unpack(raw)


@pytest.mark.parametrize("unpack", [I.unpack_inode, I.unpack_dirent, I.unpack_ca, I.unpack_usage,
                                    I.unpack_snap, I.split_fs_key])
@given(raw=st.binary(max_size=400))
def test_totality(unpack, raw):
    decodes_or_corrupt(unpack, raw)


# ---- keys ------------------------------------------------------------------------------------------
INO = st.integers(0, C.MAX_INO)
NAMESPACE_TYPES = [t for t in C.ITEM_TYPES if t != C.ITEM_BLOCK]


@given(INO, st.sampled_from(C.ITEM_TYPES), st.binary(max_size=40))
@example(C.MAX_INO, C.ITEM_BLOCK, bytes(8))
@example(0, C.ITEM_SUPER, b"")
def test_fs_key_layout(ino, item, sub):
    key = I.fs_key(ino, item, sub)
    field = ino | C.KEY_CLASS_DATA if item == C.ITEM_BLOCK else ino
    assert key == field.to_bytes(8, "big") + bytes([item]) + sub
    assert I.split_fs_key(key) == (ino, item, sub)
    assert I.key_ino(key) == ino and I.key_type(key) == item
    assert I.is_block_key(key) == (item == C.ITEM_BLOCK)


@given(INO, U64, INO, U64)
def test_block_keys_sort_numerically(ino_a, idx_a, ino_b, idx_b):
    a, b = I.block_key(ino_a, idx_a), I.block_key(ino_b, idx_b)
    assert a == I.fs_key(ino_a, C.ITEM_BLOCK, idx_a.to_bytes(8, "big"))
    assert (a < b) == ((ino_a, idx_a) < (ino_b, idx_b))
    assert I.block_index(a) == idx_a
    lo, hi = I.item_range(ino_a, C.ITEM_BLOCK)
    assert lo <= a < hi == I.block_end(ino_a)


@given(INO, INO, st.sampled_from(NAMESPACE_TYPES), st.sampled_from(NAMESPACE_TYPES), st.binary(max_size=20))
def test_namespace_keys_group_by_inode_then_item_type(ino_a, ino_b, item_a, item_b, sub):
    a, b = I.fs_key(ino_a, item_a, sub), I.fs_key(ino_b, item_b)
    if (ino_a, item_a) != (ino_b, item_b):
        assert (a < b) == ((ino_a, item_a) < (ino_b, item_b))
    assert a < I.NAMESPACE_END
    lo, hi = I.item_range(ino_a, item_a)
    assert lo <= a < hi


@given(INO, st.sampled_from(NAMESPACE_TYPES), st.binary(max_size=40), INO, U64)
def test_every_block_map_sorts_after_the_namespace(ino, item, sub, block_ino, index):
    """Format version 2: a walk (namespace keys only) never meets a block-map leaf."""
    assert I.fs_key(ino, item, sub) < I.NAMESPACE_END <= I.block_key(block_ino, index)


@given(INO, st.sampled_from(C.ITEM_TYPES), st.binary(max_size=20))
def test_inode_ranges_hold_exactly_that_inodes_items(ino, item, sub):
    key = I.fs_key(ino, item, sub)
    ranges = I.inode_ranges(ino)
    assert sum(lo <= key < hi for lo, hi in ranges) == 1
    for other in {max(ino - 1, 0), min(ino + 1, C.MAX_INO)} - {ino}:
        assert not any(lo <= I.fs_key(other, item, sub) < hi for lo, hi in ranges)


@given(INO, st.sampled_from(C.ITEM_TYPES), st.binary(max_size=20))
def test_a_key_with_the_wrong_class_bit_is_corrupt(ino, item, sub):
    key = bytearray(I.fs_key(ino, item, sub))
    key[0] ^= 0x80
    with pytest.raises(CorruptError, match="malformed key"):
        I.split_fs_key(bytes(key))


@given(U64, st.binary(min_size=1, max_size=C.NAME_MAX))
def test_dirent_key_layout(ino, name):
    h = I.name_hash(name)
    assert 0 <= h < 1 << 63
    assert h == int.from_bytes(blake3.blake3(name).digest()[:8], "big") >> 1
    assert I.dirent_key(ino, name) == ino.to_bytes(8, "big") + bytes([C.ITEM_DIRENT]) + h.to_bytes(8, "big") + name


@given(U64, U64)
def test_usage_and_remap_keys(a, b):
    assert (I.usage_key(a) < I.usage_key(b)) == (a < b)
    assert I.remap_key(b"\x01" * 8, a) == b"\x01" * 8 + a.to_bytes(8, "big")
