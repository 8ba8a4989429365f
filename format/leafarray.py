"""Leaves whose items all have one key length and one value length — block maps (format
version 2 keeps them in leaves of their own), the content-address index, the usage table —
decoded as one numpy byte matrix, a row per item, instead of item by item: the bulk path
of fsck.  `decode_fixed_leaf` accepts exactly what `node.decode_node` accepts for such a
leaf and computes the same content address as `node.block_digest` (tests keep them equal);
anything else it leaves to them (returns None)."""
import numpy as np

from ..errors import CorruptError
from . import constants as C
from .checksum import check_crc, node_hash
from .node import _HEADER, CRC_OFFSET, LEAF_ITEM_OVERHEAD


class FixedLeaf:
    """A verified leaf of `nitems` items of `klen`-byte keys and `vlen`-byte values.
    rows: uint8 matrix (nitems, 4 + klen + vlen), one packed item per row."""
    __slots__ = ("tree", "rows", "klen", "vlen", "digest")

    def __init__(self, tree, rows, klen, vlen, digest):
        self.tree, self.rows, self.klen, self.vlen, self.digest = tree, rows, klen, vlen, digest

    def __len__(self):
        return len(self.rows)

    def column(self, start, width):
        """Bytes start..start+width of every key+value (offsets past the 4-byte head)."""
        return self.rows[:, LEAF_ITEM_OVERHEAD + start:LEAF_ITEM_OVERHEAD + start + width]

    def u64(self, start, order="<"):
        """An 8-byte integer field of every item as a uint64 array."""
        return np.ascontiguousarray(self.column(start, 8)).view(order + "u8").ravel()

    def chunks(self, start, width):
        """A field of every item as a list of bytes objects."""
        if not width:
            return [b""] * len(self.rows)
        flat = np.ascontiguousarray(self.column(start, width)).tobytes()
        return [flat[i:i + width] for i in range(0, len(flat), width)]

    def keys(self):
        return self.chunks(0, self.klen)

    def vals(self):
        return self.chunks(self.klen, self.vlen)

    def first_key(self):
        return self.rows[0, LEAF_ITEM_OVERHEAD:LEAF_ITEM_OVERHEAD + self.klen].tobytes()

    def last_key(self):
        return self.rows[-1, LEAF_ITEM_OVERHEAD:LEAF_ITEM_OVERHEAD + self.klen].tobytes()


def decode_fixed_leaf(raw, expect_tree=None):
    """FixedLeaf of a leaf block whose items all share the first item's lengths, with
    magic, CRC, kind, item bounds and key order verified; None for every other block
    (internal nodes, mixed leaves, and damage, which decode_node then reports)."""
    if len(raw) < C.NODE_HEADER_SIZE + LEAF_ITEM_OVERHEAD or raw[:4] != C.NODE_MAGIC:
        return None
    _m, tree, level, nitems, _gen, payload_len, stored_crc, _r = _HEADER.unpack_from(raw)
    end = C.NODE_HEADER_SIZE + payload_len
    if level or not nitems or end > len(raw) or tree not in C.TREE_KINDS:
        return None
    if expect_tree is not None and tree != expect_tree:
        return None
    h = C.NODE_HEADER_SIZE
    klen, vlen = raw[h] | raw[h + 1] << 8, raw[h + 2] | raw[h + 3] << 8
    stride = LEAF_ITEM_OVERHEAD + klen + vlen
    if nitems * stride != payload_len or not klen:
        return None
    try:
        check_crc(raw, end, CRC_OFFSET, stored_crc, "tree node")
    except CorruptError:
        return None
    rows = np.frombuffer(raw, np.uint8, payload_len, h).reshape(nitems, stride)
    head = np.ascontiguousarray(rows[:, :LEAF_ITEM_OVERHEAD]).view("<u2")
    if not ((head[:, 0] == klen).all() and (head[:, 1] == vlen).all()):
        return None
    keys = np.ascontiguousarray(rows[:, LEAF_ITEM_OVERHEAD:LEAF_ITEM_OVERHEAD + klen]).view(f"S{klen}").ravel()
    if nitems > 1 and not (keys[1:] > keys[:-1]).all():
        return None       # equal-width byte strings: numpy's order is memcmp order
    hashed = rows
    if tree == C.TREE_FS and klen > 8 and vlen >= 8:
        pointer = rows[:, LEAF_ITEM_OVERHEAD + 8] == C.ITEM_BLOCK
        if pointer.any():
            hashed = rows.copy()
            hashed[pointer, LEAF_ITEM_OVERHEAD + klen:LEAF_ITEM_OVERHEAD + klen + 8] = 0
    digest = node_hash(bytes((tree, 0)) + nitems.to_bytes(2, "little") + hashed.tobytes())
    return FixedLeaf(tree, rows, klen, vlen, digest)
