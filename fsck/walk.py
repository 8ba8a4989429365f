"""Reading trees for fsck without trusting them.

Every node is verified where it is read (CRC, blake3, tree kind, key order in
`decode_node`) and where it hangs (level one below its parent, keys inside the bounds
its parent's separators give it).  A failure is returned as a value, never raised, so
one bad node costs its subtree and not the whole check."""
from ..errors import CorruptError, DeviceError
from ..format.node import block_digest, decode_node

MAX_LEVEL = 32        # a tree deeper than this is damage, not data


class NodeInfo:
    """A verified node: where it was found, its level and items."""
    __slots__ = ("paddr", "level", "keys", "vals")

    def __init__(self, paddr, level, keys, vals):
        self.paddr, self.level, self.keys, self.vals = paddr, level, keys, vals


class BadNode:
    """A node that could not be read: why, per location tried."""
    __slots__ = ("reason",)

    def __init__(self, reason):
        self.reason = reason


class NodeReader:
    """Reads and verifies nodes straight from the device (no engine cache: fsck must see
    the bytes on disk)."""

    def __init__(self, dev, log, block_size):
        self.dev = dev
        self.log = log
        self.block_size = block_size
        self.nodes_read = 0

    def read_block(self, paddr):
        if not self.log.valid_paddr(paddr):
            raise CorruptError(f"block {paddr} outside the segment area")
        try:
            return self.dev.read(paddr)
        except DeviceError as exc:
            raise CorruptError(str(exc)) from None

    def read(self, kind, ptr, first_paddr=None):
        """NodeInfo, or BadNode.  first_paddr (a content-addressed node's location in the
        CA index, which is authoritative) is tried first, then the pointer's paddr hint."""
        paddr, digest = ptr
        reasons = []
        for where in dict.fromkeys(p for p in (first_paddr, paddr) if p is not None):
            try:
                raw = self.read_block(where)
                self.nodes_read += 1
                tree, level, _gen, keys, vals = decode_node(raw, expect_tree=kind)
                got = block_digest(raw, tree, level, keys, vals)
            except (CorruptError, ValueError) as exc:
                reasons.append(f"block {where}: {exc}")
                continue
            if got != digest:
                reasons.append(f"block {where}: hash {got.hex()[:16]}, pointer wants {digest.hex()[:16]}")
                continue
            return NodeInfo(where, level, keys, vals)
        return BadNode("; ".join(reasons))


def walk_tree(reader, kind, root, *, seen=None, locate=None, visit=None, problem=None):
    """Depth-first walk from root (paddr, hash), leaves in key order.

    seen: hash -> NodeInfo | BadNode, shared between walks so each distinct node is read
    once (FS trees share nodes).  locate(hash) -> paddr to try before the pointer's hint, or None.
    visit(ptr, info, first) is called for every node reached (first: newly read).
    problem(message) records a structural problem (a shared bad node is reported once).
    Returns (the leaves' NodeInfos, number of bad nodes and structural problems met)."""
    seen = {} if seen is None else seen
    leaves = []
    bad = 0
    stack = [(root, None, b"", None)]
    while stack:
        ptr, want_level, lo, hi = stack.pop()
        digest = ptr[1]
        info = seen.get(digest)
        first = info is None
        if first:
            info = seen[digest] = reader.read(kind, ptr, locate(digest) if locate else None)
        if visit is not None:
            visit(ptr, info, first)
        if isinstance(info, BadNode):
            bad += 1
            if first and problem is not None:
                problem(f"node {digest.hex()[:16]} (pointer to block {ptr[0]}) unreadable: {info.reason}")
            continue
        where = f"node {digest.hex()[:16]} at block {info.paddr}"
        if want_level is not None and info.level != want_level:
            bad += 1
            problem(f"{where}: level {info.level}, parent wants {want_level}")
            continue
        if info.level > MAX_LEVEL:
            bad += 1
            problem(f"{where}: level {info.level} is implausible")
            continue
        if info.keys[0] < lo or (hi is not None and info.keys[-1] >= hi):
            bad += 1
            problem(f"{where}: keys {info.keys[0].hex()[:24]}..{info.keys[-1].hex()[:24]} outside "
                    f"the parent's bounds [{lo.hex()[:24]}, {hi.hex()[:24] if hi is not None else 'end'})")
        if info.level == 0:
            leaves.append(info)
            continue
        keys = info.keys
        for i in range(len(keys) - 1, -1, -1):
            child_lo = lo if i == 0 else keys[i]
            child_hi = keys[i + 1] if i + 1 < len(keys) else hi
            stack.append((info.vals[i], info.level - 1, child_lo, child_hi))
    return leaves, bad
