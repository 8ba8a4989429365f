"""One persistent copy-on-write B+tree, used for every tree on the device.

Stored nodes are immutable and shared; a change copies the path from the root to the
leaf into dirty in-memory `Node`s, and `flush` writes them bottom-up (children first,
so each parent can carry its children's hashes: the Merkle link).

An internal node's key i is a lower bound of child i's keys; key 0 is not used for
routing (it may be stale after inserts below it)."""
from bisect import bisect_left, bisect_right

from .format.node import INTERNAL_ITEM_OVERHEAD, LEAF_ITEM_OVERHEAD, capacity, max_item


class Node:
    """A dirty (not yet stored) node.  vals: bytes in leaves; in internal nodes each
    child is a stored pointer (paddr, hash) or a dirty Node.  nbytes: payload size."""
    __slots__ = ("level", "keys", "vals", "nbytes")

    def __init__(self, level, keys, vals):
        self.level, self.keys, self.vals = level, keys, vals
        self.nbytes = sum(map(len, keys)) + (
            sum(map(len, vals)) + LEAF_ITEM_OVERHEAD * len(keys) if level == 0
            else INTERNAL_ITEM_OVERHEAD * len(keys))

    def size(self):
        return self.nbytes

    def item_size(self, i):
        if self.level == 0:
            return len(self.keys[i]) + len(self.vals[i]) + LEAF_ITEM_OVERHEAD
        return len(self.keys[i]) + INTERNAL_ITEM_OVERHEAD


def _route(keys, key):
    i = bisect_right(keys, key) - 1
    return i if i > 0 else 0


class Tree:
    """root: None (empty), a stored pointer (paddr, hash), or a dirty Node."""

    def __init__(self, store, kind, root=None):
        self.store = store
        self.kind = kind
        self.root = None if root is None or root[0] == 0 else root
        self.cap = capacity(store.block_size)
        self.item_max = max_item(store.block_size)
        self.replaced = []        # stored nodes superseded by dirty copies (system trees)

    # ---- reading ---------------------------------------------------------------
    def _view(self, ref):
        if isinstance(ref, Node):
            return ref.level, ref.keys, ref.vals
        return self.store.load_node(self.kind, ref)

    def get(self, key):
        ref = self.root
        if ref is None:
            return None
        while True:
            level, keys, vals = self._view(ref)
            if level == 0:
                i = bisect_left(keys, key)
                return vals[i] if i < len(keys) and keys[i] == key else None
            ref = vals[_route(keys, key)]

    def scan(self, lo=b"", hi=None):
        """Items with lo <= key < hi, in key order.  Do not modify the tree meanwhile."""
        if self.root is None:
            return iter(())
        return self._scan(self.root, lo, hi)

    def _scan(self, ref, lo, hi):
        level, keys, vals = self._view(ref)
        if level == 0:
            for i in range(bisect_left(keys, lo), len(keys)):
                if hi is not None and keys[i] >= hi:
                    return
                yield keys[i], vals[i]
            return
        first = _route(keys, lo)
        for j in range(first, len(keys)):
            if hi is not None and j > first and keys[j] >= hi:
                return
            yield from self._scan(vals[j], lo, hi)

    def leaf_keys(self):
        """Each leaf's key list, in key order (a whole-tree pass without per-item work)."""
        def walk(ref):
            level, keys, vals = self._view(ref)
            if level == 0:
                yield keys
            else:
                for child in vals:
                    yield from walk(child)
        return walk(self.root) if self.root is not None else iter(())

    def is_dirty(self):
        return isinstance(self.root, Node)

    # ---- writing -----------------------------------------------------------------
    def _dirty(self, ref):
        if isinstance(ref, Node):
            return ref
        level, keys, vals = self.store.load_node(self.kind, ref)
        self.replaced.append(ref)
        return Node(level, list(keys), list(vals))

    def _path(self, key, with_bound=False):
        """Dirty the path to key's leaf; with_bound also gives the leaf's exclusive upper
        key bound (None = unbounded)."""
        node = self.root = self._dirty(self.root)
        path = []
        bound = None
        while node.level > 0:
            i = _route(node.keys, key)
            if i + 1 < len(node.keys):
                bound = node.keys[i + 1]
            child = node.vals[i] = self._dirty(node.vals[i])
            path.append((node, i))
            node = child
        return (node, path, bound) if with_bound else (node, path)

    def touch(self, key, level):
        """Make the path from the root to the level-`level` node holding `key` dirty, so
        the next flush rewrites it elsewhere (used by the cleaner)."""
        node = self.root = self._dirty(self.root)
        while node.level > level:
            i = _route(node.keys, key)
            child = node.vals[i] = self._dirty(node.vals[i])
            node = child

    def update_sorted(self, items):
        """Apply (key, value or None to delete) in key order, descending once per leaf
        rather than once per item (the CA index takes thousands per commit)."""
        leaf = bound = path = None
        for key, value in items:
            if value is None:
                self.delete(key)
                leaf = None
                continue
            if leaf is None or (bound is not None and key >= bound) or self.root is None:
                if self.root is None:
                    self.put(key, value)
                    continue
                leaf, path, bound = self._path(key, with_bound=True)
            if self._set_in_leaf(leaf, path, key, value):
                leaf = None

    def put(self, key, value):
        if len(key) + len(value) + LEAF_ITEM_OVERHEAD > self.item_max:
            raise ValueError(f"item of {len(key) + len(value)} bytes exceeds {self.item_max}")
        if self.root is None:
            self.root = Node(0, [key], [value])
            return
        leaf, path = self._path(key)
        self._set_in_leaf(leaf, path, key, value)

    def _set_in_leaf(self, leaf, path, key, value):
        """Insert or replace key in its (dirty) leaf; returns whether the leaf split."""
        i = bisect_left(leaf.keys, key)
        if i < len(leaf.keys) and leaf.keys[i] == key:
            leaf.nbytes += len(value) - len(leaf.vals[i])
            leaf.vals[i] = value
        else:
            leaf.keys.insert(i, key)
            leaf.vals.insert(i, value)
            leaf.nbytes += len(key) + len(value) + LEAF_ITEM_OVERHEAD
        if leaf.nbytes <= self.cap:
            return False
        self._fix_overflow(leaf, path, appending=i == len(leaf.keys) - 1)
        return True

    def delete(self, key):
        """Remove key; returns whether it was there."""
        if self.get(key) is None:
            return False
        leaf, path = self._path(key)
        i = bisect_left(leaf.keys, key)
        leaf.nbytes -= leaf.item_size(i)
        del leaf.keys[i], leaf.vals[i]
        self._fix_underflow(leaf, path)
        return True

    def _split(self, node, appending):
        """Cut an oversized node into pieces that each fit: about equal halves, or, when
        keys arrive in order (appending), a full left piece so sequential loads pack tight."""
        sizes = [node.item_size(i) for i in range(len(node.keys))]
        target = self.cap if appending else node.nbytes / -(-node.nbytes // self.cap)
        pieces, start, used = [], 0, 0
        for i, item in enumerate(sizes):
            if i > start and (used + item > self.cap or used >= target):
                pieces.append(Node(node.level, node.keys[start:i], node.vals[start:i]))
                start, used = i, 0
            used += item
        pieces.append(Node(node.level, node.keys[start:], node.vals[start:]))
        return pieces

    def _fix_overflow(self, node, path, appending=False):
        while node.nbytes > self.cap:
            pieces = self._split(node, appending)
            node.keys, node.vals, node.nbytes = pieces[0].keys, pieces[0].vals, pieces[0].nbytes
            if path:
                parent, i = path.pop()
                appending = appending and i == len(parent.keys) - 1
                if i == 0 and parent.keys[0] > node.keys[0]:
                    # Key 0 is not routed on, so it may be stale (above keys inserted
                    # since): lower it, or the separators put after it break the order.
                    parent.nbytes += len(node.keys[0]) - len(parent.keys[0])
                    parent.keys[0] = node.keys[0]
                parent.keys[i + 1:i + 1] = [p.keys[0] for p in pieces[1:]]
                parent.vals[i + 1:i + 1] = pieces[1:]
                parent.nbytes += sum(len(p.keys[0]) + INTERNAL_ITEM_OVERHEAD for p in pieces[1:])
                node = parent
            else:
                self.root = Node(node.level + 1, [p.keys[0] for p in pieces], [node] + pieces[1:])
                node = self.root

    def _fix_underflow(self, node, path):
        while path:
            parent, i = path[-1]
            if not node.keys:
                parent.nbytes -= parent.item_size(i)
                del parent.keys[i], parent.vals[i]
            elif node.size() < self.cap // 4 and len(parent.vals) > 1:
                j = i + 1 if i + 1 < len(parent.vals) else i - 1
                sib = parent.vals[j] = self._dirty(parent.vals[j])
                left, right, r = (node, sib, j) if j > i else (sib, node, i)
                if left.size() + right.size() > self.cap:
                    break
                if right.level > 0:
                    right.nbytes += len(parent.keys[r]) - len(right.keys[0])
                    right.keys[0] = parent.keys[r]   # becomes a routing key: make it exact
                left.keys += right.keys
                left.vals += right.vals
                left.nbytes += right.nbytes
                parent.nbytes -= parent.item_size(r)
                del parent.keys[r], parent.vals[r]
            else:
                break
            path.pop()
            node = parent
        root = self.root
        while isinstance(root, Node) and root.level > 0 and len(root.vals) == 1:
            root = root.vals[0]
        if isinstance(root, Node) and not root.keys:
            root = None
        self.root = root

    def bulk_load(self, items):
        """Replace the whole content with sorted (key, value) items, packing nodes ~full."""
        nodes = self._pack(0, items)
        while len(nodes) > 1:
            nodes = self._pack(nodes[0].level + 1, [(n.keys[0], n) for n in nodes])
        self.root = nodes[0] if nodes and nodes[0].keys else None

    def _pack(self, level, items):
        out, keys, vals, used = [], [], [], 0
        for k, v in items:
            item = len(k) + (LEAF_ITEM_OVERHEAD + len(v) if level == 0 else INTERNAL_ITEM_OVERHEAD)
            if keys and used + item > self.cap:
                out.append(Node(level, keys, vals))
                keys, vals, used = [], [], 0
            keys.append(k)
            vals.append(v)
            used += item
        out.append(Node(level, keys, vals))
        return out

    def flush(self, generation):
        """Store every dirty node; returns the root pointer (None when empty)."""
        if isinstance(self.root, Node):
            self.root = self._flush(self.root, generation)
        return self.root

    def _flush(self, node, generation):
        if node.level > 0:
            node.vals = [self._flush(v, generation) if isinstance(v, Node) else v for v in node.vals]
        return self.store.put_node(self.kind, node.level, node.keys, node.vals, generation)

    def walk_nodes(self):
        """(pointer, level, keys, vals) of every stored node, parents first."""
        if self.root is None or isinstance(self.root, Node):
            return
        stack = [self.root]
        while stack:
            ptr = stack.pop()
            level, keys, vals = self.store.load_node(self.kind, ptr)
            yield ptr, level, keys, vals
            if level > 0:
                stack.extend(reversed(vals))
