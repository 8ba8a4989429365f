"""Reading trees for fsck without trusting them.

Every node is verified where it is read (CRC, blake3, tree kind, key order in
`decode_node`) and where it hangs (level one below its parent, keys inside the bounds
its parent's separators give it).  A failure is returned as a value, never raised, so
one bad node costs its subtree and not the whole check."""
from ..errors import CorruptError, DeviceError
from ..format.leafarray import decode_fixed_leaf
from ..format.node import block_digest, decode_node

MAX_LEVEL = 32        # a tree deeper than this is damage, not data
RUN_GAP = 16          # blocks between two wanted ones that a prefetch reads rather than seeks over
RUN_MAX = 1024        # blocks per prefetch read (4 MiB at 4 KiB blocks)


class NodeInfo:
    """A verified node: where it was found, its level and items.  A leaf of fixed-size
    items (block maps, CA and usage entries) keeps them as one array (`fixed`, a
    format.leafarray.FixedLeaf) and makes the keys and values lists only when asked."""
    __slots__ = ("paddr", "level", "_keys", "_vals", "fixed", "lo_key", "hi_key")

    def __init__(self, paddr, level, keys, vals, fixed=None):
        self.paddr, self.level, self._keys, self._vals, self.fixed = paddr, level, keys, vals, fixed
        if fixed is not None:
            self.lo_key, self.hi_key = fixed.first_key(), fixed.last_key()
        else:
            self.lo_key, self.hi_key = keys[0], keys[-1]

    @property
    def keys(self):
        if self._keys is None:
            self._keys = self.fixed.keys()
        return self._keys

    @property
    def vals(self):
        if self._vals is None:
            self._vals = self.fixed.vals()
        return self._vals


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
        self.prefetched = {}      # paddr -> block bytes read ahead, handed out once

    def prefetch(self, paddrs):
        """Read these blocks ahead in few large sequential reads (runs of nearby blocks,
        gaps up to RUN_GAP read through), instead of one pread per node as the walk
        reaches it: a cold device is read in order, a warm one with few system calls."""
        want = sorted(p for p in set(paddrs) if self.log.valid_paddr(p))
        bs, i = self.block_size, 0
        while i < len(want):
            j = i
            while j + 1 < len(want) and want[j + 1] - want[j] <= RUN_GAP and want[j + 1] - want[i] < RUN_MAX:
                j += 1
            first = want[i]
            try:
                run = self.dev.read(first, want[j] - first + 1)
            except DeviceError:
                i = j + 1
                continue          # read one by one later: the error then names its block
            for p in want[i:j + 1]:
                off = (p - first) * bs
                self.prefetched[p] = run[off:off + bs]
            i = j + 1

    def read_block(self, paddr):
        if not self.log.valid_paddr(paddr):
            raise CorruptError(f"block {paddr} outside the segment area")
        raw = self.prefetched.pop(paddr, None)
        if raw is not None:
            return raw
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
                fixed = decode_fixed_leaf(raw, kind)
                if fixed is not None:
                    if fixed.digest == digest:
                        return NodeInfo(where, 0, None, None, fixed)
                    reasons.append(f"block {where}: hash {fixed.digest.hex()[:16]}, pointer wants {digest.hex()[:16]}")
                    continue
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
        if info.lo_key < lo or (hi is not None and info.hi_key >= hi):
            bad += 1
            problem(f"{where}: keys {info.lo_key.hex()[:24]}..{info.hi_key.hex()[:24]} outside "
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
