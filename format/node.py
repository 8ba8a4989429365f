"""Tree node: one block holding a sorted run of (key, value) items (leaf, level 0) or
(key, child pointer) items (internal, level > 0).  Keys are compared as raw bytes."""
import struct

from construct import Array, Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Struct, this

from ..errors import CorruptError
from . import constants as C
from .checksum import check_crc, crc32c, node_hash
from .pointer import POINTER_SIZE, Pointer

NodeHeader = Struct(
    "magic" / Const(C.NODE_MAGIC),
    "tree" / Int8ul,                 # TREE_* kind of the tree this node belongs to
    "level" / Int8ul,                # 0 = leaf; a child has level - 1
    "nitems" / Int16ul,              # items in the payload, >= 1
    "generation" / Int64ul,          # commit seq that wrote it (not part of the hash)
    "payload_len" / Int32ul,         # bytes of payload after this header
    "crc32c" / Int32ul,              # CRC32C of header (this field as 0) + payload
    "reserved" / Bytes(8),           # 0
)
assert NodeHeader.sizeof() == C.NODE_HEADER_SIZE
CRC_OFFSET = 20
_HEADER = struct.Struct("<4sBBHQII8s")   # NodeHeader, for the hot path (tests keep them equal)
assert _HEADER.size == C.NODE_HEADER_SIZE

LeafItem = Struct(
    "klen" / Int16ul,                # key length in bytes
    "vlen" / Int16ul,                # value length in bytes
    "key" / Bytes(this.klen),        # compared as raw bytes; strictly increasing in a node
    "value" / Bytes(this.vlen),      # item value (items.py); FS block items hold a Pointer
)
InternalItem = Struct(
    "klen" / Int16ul,                # key length in bytes
    "key" / Bytes(this.klen),        # lower bound of the child's keys (item 0: not used to route)
    "child" / Pointer,               # child node, one level down
)
LeafNode = Struct(
    "header" / NodeHeader,           # level 0
    "items" / Array(this.header.nitems, LeafItem),  # packed back to back, payload_len bytes
)
InternalNode = Struct(
    "header" / NodeHeader,           # level > 0
    "items" / Array(this.header.nitems, InternalItem),  # packed back to back, payload_len bytes
)

LEAF_ITEM_OVERHEAD = 4
INTERNAL_ITEM_OVERHEAD = 2 + POINTER_SIZE
_ZERO8 = bytes(8)


def capacity(block_size: int) -> int:
    """Payload bytes one node can hold."""
    return block_size - C.NODE_HEADER_SIZE


def max_item(block_size: int) -> int:
    """Largest leaf item (key + value + overhead): half a node, so any split succeeds."""
    return capacity(block_size) // 2


def value_has_pointer(tree: int, key: bytes) -> bool:
    """Leaf values that are block pointers (their paddr is a hint, left out of the hash)."""
    return tree == C.TREE_FS and len(key) > 8 and key[8] == C.ITEM_BLOCK


def encode_node(tree, level, generation, keys, vals, block_size):
    """Build one node block.  vals: bytes (leaf) or (paddr, hash) (internal).
    Returns (block bytes, blake3 content address)."""
    parts, hparts = [], []
    if level == 0:
        ptr_values = tree == C.TREE_FS
        for k, v in zip(keys, vals):
            head = len(k).to_bytes(2, "little") + len(v).to_bytes(2, "little")
            parts += (head, k, v)
            if ptr_values and value_has_pointer(tree, k):
                hparts += (head, k, _ZERO8, v[8:])
            else:
                hparts += (head, k, v)
    else:
        for k, (paddr, digest) in zip(keys, vals):
            head = len(k).to_bytes(2, "little")
            parts += (head, k, paddr.to_bytes(8, "little"), digest)
            hparts += (head, k, _ZERO8, digest)
    payload = b"".join(parts)
    if len(payload) > capacity(block_size) or not keys:
        raise ValueError(f"node payload {len(payload)} bytes, {len(keys)} items")
    header = _HEADER.pack(C.NODE_MAGIC, tree, level, len(keys), generation, len(payload), 0, _ZERO8)
    crc = crc32c(header + payload).to_bytes(4, "little")
    block = b"".join((header[:CRC_OFFSET], crc, header[CRC_OFFSET + 4:], payload))
    digest = node_hash(bytes((tree, level)) + len(keys).to_bytes(2, "little") + b"".join(hparts))
    return block + bytes(block_size - len(block)), digest


def decode_node(raw, expect_tree=None):
    """Verify CRC and bounds, then parse.  Returns (tree, level, generation, keys, vals)."""
    raw = bytes(raw)
    if len(raw) < C.NODE_HEADER_SIZE:
        raise CorruptError(f"tree node truncated: {len(raw)} bytes")
    if raw[:4] != C.NODE_MAGIC:
        raise CorruptError("tree node: bad magic")
    _magic, tree, level, nitems, generation, payload_len, stored_crc, _r = _HEADER.unpack_from(raw)
    end = C.NODE_HEADER_SIZE + payload_len
    if end > len(raw) or nitems == 0:
        raise CorruptError(f"tree node: bad payload length {payload_len} / {nitems} items")
    check_crc(raw, end, CRC_OFFSET, stored_crc, "tree node")
    if tree not in C.TREE_KINDS or (expect_tree is not None and tree != expect_tree):
        raise CorruptError(f"tree node: unexpected tree kind {tree}")
    keys, vals = _parse_items(raw, C.NODE_HEADER_SIZE, end, level, nitems)
    if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
        raise CorruptError("tree node: keys out of order")
    return tree, level, generation, keys, vals


def block_digest(raw, tree, level, keys, vals):
    """The content address of a node block decode_node accepted, hashed straight from its
    payload with the pointer paddrs zeroed: what encode_node returns for the same items,
    without building the block again (fsck verifies every node this way)."""
    end = C.NODE_HEADER_SIZE + int.from_bytes(raw[16:20], "little")
    buf = bytearray(raw[C.NODE_HEADER_SIZE:end])
    pos = 0
    if level > 0:
        for k in keys:
            pos += 2 + len(k)
            buf[pos:pos + 8] = _ZERO8
            pos += POINTER_SIZE
    elif tree == C.TREE_FS:
        for k, v in zip(keys, vals):
            pos += 4 + len(k)
            if len(k) > 8 and k[8] == C.ITEM_BLOCK:
                if len(v) < 8:       # malformed: let the reference rule decide
                    return encode_node(tree, level, 0, keys, vals, len(raw))[1]
                buf[pos:pos + 8] = _ZERO8
            pos += len(v)
    return node_hash(bytes((tree, level)) + len(keys).to_bytes(2, "little") + bytes(buf))


def _parse_items(raw, pos, end, level, nitems):
    """Fast item parser (the reference is LeafNode/InternalNode; tests keep them equal)."""
    keys, vals = [], []
    try:
        for _ in range(nitems):
            klen = raw[pos] | raw[pos + 1] << 8
            if level == 0:
                vlen = raw[pos + 2] | raw[pos + 3] << 8
                pos += 4
                keys.append(raw[pos:pos + klen])
                vals.append(raw[pos + klen:pos + klen + vlen])
                pos += klen + vlen
            else:
                pos += 2
                keys.append(raw[pos:pos + klen])
                pos += klen
                vals.append((int.from_bytes(raw[pos:pos + 8], "little"), raw[pos + 8:pos + POINTER_SIZE]))
                pos += POINTER_SIZE
    except IndexError:
        raise CorruptError("tree node: items run past the payload") from None
    if pos != end:
        raise CorruptError("tree node: items do not fill the payload")
    return keys, vals


def hash_of_block(raw) -> bytes:
    """Recompute a stored node's content address from its block (for verification)."""
    tree, level, _gen, keys, vals = decode_node(raw)
    return encode_node(tree, level, 0, keys, vals, len(raw))[1]


def child_hashes(tree, level, keys, vals):
    """Hashes a node points at: children (internal) or data blocks (FS tree leaves)."""
    if level > 0:
        return [h for _p, h in vals]
    if tree != C.TREE_FS:
        return []
    return [v[8:40] for k, v in zip(keys, vals) if value_has_pointer(tree, k)]
