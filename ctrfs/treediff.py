"""The difference between two FS trees of one engine, as file-system changes: what an OCI
layer over the old tree must hold to give the new one.

Two levels (spec/DESIGN.md, "A tree diff that skips equal subtrees"):
1. `item_diff` walks both B+trees at once and skips every pair of subtrees whose hashes
   are equal (the child pointers carry them), yielding the items that differ.
2. `TreeDiff` turns the changed items (inode records, xattrs, dirents, block maps, all
   keyed by inode number) into path changes: entries to write, whiteouts, opaque
   directories and hardlinks, by walking from the root only into directories that lead to
   a change."""
import stat
from typing import NamedTuple

from .errors import CorruptError
from .format import constants as C
from .format.items import NAMESPACE_END, dirent_key, fs_key, key_ino, key_type, unpack_dirent, unpack_inode
from .tree import Tree

DOTDOT = b".."

# Change kinds, in the terms of the OCI layer format.
ENTRY = "entry"          # write the inode `ino` of the new tree at `path` (a dir: itself only)
LINK = "link"            # a hardlink at `path` to the file at `target` (this layer or lower)
WHITEOUT = "whiteout"    # `path` is gone (`.wh.NAME`), with everything below it
OPAQUE = "opaque"        # directory `path` hides all it held in lower layers (`.wh..wh..opq`)


class Change(NamedTuple):
    kind: str
    path: bytes              # relative, "/"-separated, b"" for the root
    ino: int = 0             # ENTRY: inode in the new tree
    target: bytes = b""      # LINK: path of the first name


def sort_key(change):
    """Tar order: a directory before what it holds, its opaque marker right after it."""
    parts = tuple(change.path.split(b"/")) if change.path else ()
    return parts + (b"",) if change.kind == OPAQUE else parts


class CountingStore:
    """The engine's store, counting node loads (cache hits included): the diff's cost."""

    def __init__(self, store):
        self.store = store
        self.block_size = store.block_size
        self.loads = 0
        self.distinct = set()     # hashes of the nodes read (the rest hit the node cache)

    def load_node(self, kind, ptr):
        self.loads += 1
        self.distinct.add(ptr[1])
        return self.store.load_node(kind, ptr)


# ---- level 1: items ----------------------------------------------------------------------
def item_diff(store, old_root, new_root):
    """(key, old value or None, new value or None) of every FS item that differs, in key
    order.  Each side is a stack of pending subtrees (lower key bound, level, pointer) and
    leaf cursors; two subtrees on top with one hash are the same run of items and are
    dropped unread."""
    old, new = [], []
    if old_root is not None and old_root[0] and new_root is not None and new_root[0] \
            and old_root[1] == new_root[1]:
        return
    for stack, root in ((old, old_root), (new, new_root)):
        if root is not None and root[0]:
            _expand(store, stack, (b"", None, root))
    while old or new:
        a = old[-1] if old else None
        b = new[-1] if new else None
        a_leaf, b_leaf = isinstance(a, list), isinstance(b, list)
        if a is not None and b is not None and not a_leaf and not b_leaf:
            if a[2][1] == b[2][1]:
                old.pop()
                new.pop()
            elif a[0] < b[0]:
                _expand(store, old, old.pop())
            elif b[0] < a[0]:
                _expand(store, new, new.pop())
            elif a[1] > b[1]:
                _expand(store, old, old.pop())
            elif b[1] > a[1]:
                _expand(store, new, new.pop())
            else:
                _expand(store, old, old.pop())
                _expand(store, new, new.pop())
            continue
        if a is not None and not a_leaf:
            # a subtree against an item (or nothing): the item comes first if it is below
            # the subtree's lower bound, else the subtree must be opened
            if b is None or b[0][b[2]] >= a[0]:
                _expand(store, old, old.pop())
                continue
        if b is not None and not b_leaf:
            if a is None or a[0][a[2]] >= b[0]:
                _expand(store, new, new.pop())
                continue
        ka = a[0][a[2]] if a_leaf else None
        kb = b[0][b[2]] if b_leaf else None
        if kb is None or (ka is not None and ka < kb):
            yield bytes(ka), bytes(a[1][a[2]]), None
            _advance(old)
        elif ka is None or kb < ka:
            yield bytes(kb), None, bytes(b[1][b[2]])
            _advance(new)
        else:
            va, vb = a[1][a[2]], b[1][b[2]]
            if va != vb:
                yield bytes(ka), bytes(va), bytes(vb)
            _advance(old)
            _advance(new)


def _expand(store, stack, entry):
    """Replace a subtree by its children (child i > 0 has key i as lower bound; child 0
    inherits its parent's: key 0 may be stale) or, for a leaf, by a cursor."""
    lb, _level, ptr = entry
    level, keys, vals = store.load_node(C.TREE_FS, ptr)
    if level == 0:
        if keys:
            stack.append([keys, vals, 0])
        return
    for j in range(len(keys) - 1, -1, -1):
        stack.append((bytes(keys[j]) if j else lb, level - 1, vals[j]))


def _advance(stack):
    cur = stack[-1]
    cur[2] += 1
    if cur[2] == len(cur[0]):
        stack.pop()


# ---- level 2: paths ------------------------------------------------------------------------
def _tar_fields(rec):
    """What a tar entry of the inode carries (not nlink, ctime, atime or the generation)."""
    (mode, uid, gid, _nlink, rdev, size, _at, mtime, _ct, flags, _gen), inline = unpack_inode(rec)
    if stat.S_ISDIR(mode):
        return mode, uid, gid, mtime
    return mode, uid, gid, rdev, size, mtime, flags & C.INODE_INLINE, inline


class TreeDiff:
    """changes(): the sorted Change list that turns the old tree into the new one.
    old_root may be None (no parent: everything is added)."""

    def __init__(self, store, old_root, new_root):
        self.store = CountingStore(store)
        self.old = Tree(self.store, C.TREE_FS, old_root)
        self.new = Tree(self.store, C.TREE_FS, new_root)
        self._dirs = {}           # dir ino -> [(name, ino)] in the new tree
        self.out = {}             # path -> Change

    @property
    def loads(self):
        return self.store.loads

    @property
    def nodes_read(self):
        return len(self.store.distinct)

    # ---- reading the trees ----------------------------------------------------------
    def _inode(self, tree, ino):
        raw = tree.get(fs_key(ino, C.ITEM_INODE))
        return bytes(raw) if raw is not None else None

    def _mode(self, tree, ino):
        raw = self._inode(tree, ino)
        if raw is None:
            raise CorruptError(f"FS tree: a directory entry names missing inode {ino}")
        return unpack_inode(raw)[0][0]

    def _entries(self, ino):
        """[(name, ino)] of a directory of the new tree, in key order (cached)."""
        got = self._dirs.get(ino)
        if got is None:
            got = []
            for key, val in self.new.scan(fs_key(ino, C.ITEM_DIRENT), fs_key(ino, C.ITEM_DIRENT + 1)):
                name = bytes(key[17:])
                if name == DOTDOT:
                    continue
                if not name or b"/" in name or b"\0" in name or name == b".":
                    raise CorruptError(f"FS tree: bad name {name!r} in directory {ino}")
                got.append((name, unpack_dirent(val)[0]))
            self._dirs[ino] = got
        return got

    def _parent(self, ino):
        raw = self.new.get(dirent_key(ino, DOTDOT))
        return unpack_dirent(raw)[0] if raw is not None else None

    def _path(self, ino):
        """Path of a directory of the new tree, by its `..` entries."""
        parts = []
        seen = 0
        while ino != C.ROOT_INO:
            parent = self._parent(ino)
            if parent is None or seen > 4096:
                raise CorruptError(f"FS tree: directory {ino} is not reachable from the root")
            parts.append(next((n for n, i in self._entries(parent) if i == ino), None))
            if parts[-1] is None:
                raise CorruptError(f"FS tree: directory {ino} has no name in its parent {parent}")
            ino, seen = parent, seen + 1
        return b"/".join(reversed(parts))

    def _names_search(self, wanted):
        """{ino: [(dir, name)]} for the inodes in `wanted`, by a pass over the dirents of
        the new tree; subtrees of block maps (or of one inode's xattrs) are not read, so
        the cost is the tree's namespace, not its data."""
        found = {ino: [] for ino in wanted}
        if self.new.root is None:
            return found
        stack = [(self.new.root, b"", None)]
        while stack:
            ptr, lo, hi = stack.pop()
            if _no_dirents(lo, hi):
                continue
            level, keys, vals = self.store.load_node(C.TREE_FS, ptr)
            if level:
                for j in range(len(keys) - 1, -1, -1):
                    stack.append((vals[j], bytes(keys[j]) if j else lo,
                                  bytes(keys[j + 1]) if j + 1 < len(keys) else hi))
                continue
            for key, val in zip(keys, vals):
                if len(key) > 17 and key[8] == C.ITEM_DIRENT:
                    target = unpack_dirent(val)[0]
                    if target in found and bytes(key[17:]) != DOTDOT:
                        found[target].append((int.from_bytes(key[:8], "big"), bytes(key[17:])))
        return found

    # ---- the diff ------------------------------------------------------------------------------
    def changes(self):
        if self.new.root is None:
            return []
        if self.old.root is None:
            self._full(b"", C.ROOT_INO)
            return self._finish({}, {})
        recs, dirents, other = {}, {}, set()
        for key, ov, nv in item_diff(self.store, self.old.root, self.new.root):
            ino, typ = key_ino(key), key_type(key)
            if typ == C.ITEM_INODE:
                recs[ino] = (ov, nv)
            elif typ == C.ITEM_DIRENT and key[17:] != DOTDOT:
                dirents.setdefault(ino, {})[key[17:]] = (
                    unpack_dirent(ov)[0] if ov else None, unpack_dirent(nv)[0] if nv else None)
            elif typ in (C.ITEM_XATTR, C.ITEM_BLOCK):
                other.add(ino)
        self.dirty = set()
        for ino in set(recs) | other:
            ov, nv = recs.get(ino) or (self._inode(self.old, ino), self._inode(self.new, ino))
            if ov is not None and nv is not None and (ino in other or _tar_fields(ov) != _tar_fields(nv)):
                self.dirty.add(ino)
        # Names in the new tree of the files that matter: the dirents that changed give
        # some; a file changed in place, or with more links than those, needs a search.
        names = {}
        for d, changed in dirents.items():
            for name, (_co, cn) in changed.items():
                if cn is not None:
                    names.setdefault(cn, []).append((d, name))
        nlinks = {}
        search = []
        for ino in self.dirty | set(names):
            rec = self._inode(self.new, ino)
            if rec is None:
                continue
            (mode, _u, _g, nlink, *_r), _inline = unpack_inode(rec)
            if stat.S_ISDIR(mode):
                continue
            nlinks[ino] = nlink
            if len(names.get(ino, ())) < nlink and (ino in self.dirty or nlink > 1):
                search.append(ino)
        if search:
            names.update(self._names_search(search))
        touched = set()
        starts = [d for d in dirents if self._inode(self.new, d) is not None]
        starts += [ino for ino in self.dirty if ino not in nlinks]              # directories
        starts += [d for ino in self.dirty if ino in nlinks for d, _n in names.get(ino, ())]
        for d in starts:
            while d is not None and d not in touched:
                touched.add(d)
                d = self._parent(d) if d != C.ROOT_INO else None
        if C.ROOT_INO in touched:
            self._walk(b"", C.ROOT_INO, dirents, touched)
        return self._finish(names, nlinks)

    def _emit(self, kind, path, ino=0, target=b""):
        self.out[path if kind != OPAQUE else path + b"/\0opq"] = Change(kind, path, ino, target)

    def _walk(self, path, d, dirents, touched):
        """Directory d is at `path` in both trees and leads to a change."""
        self._emit(ENTRY, path, d)
        changed = dirents.get(d, {})
        join = (path + b"/") if path else b""
        for name, cn in self._entries(d):
            if name in changed and changed[name][0] != cn:
                co = changed[name][0]
                if co is not None and stat.S_ISDIR(self._mode(self.old, co)) \
                        and stat.S_ISDIR(self._mode(self.new, cn)):
                    self._emit(ENTRY, join + name, cn)
                    self._emit(OPAQUE, join + name)
                    for child, ino in self._entries(cn):
                        self._full(join + name + b"/" + child, ino)
                else:
                    self._full(join + name, cn)
            elif cn in touched:
                self._walk(join + name, cn, dirents, touched)
            elif cn in self.dirty:
                self._emit(ENTRY, join + name, cn)
        for name, (co, cn) in changed.items():
            if cn is None and co is not None:
                self._emit(WHITEOUT, join + name)

    def _full(self, path, ino):
        """Everything at and below `path` (new, moved or replaced)."""
        self._emit(ENTRY, path, ino)
        if stat.S_ISDIR(self._mode(self.new, ino)):
            join = (path + b"/") if path else b""
            for name, child in self._entries(ino):
                self._full(join + name, child)

    def _finish(self, names, nlinks):
        """Hardlinks: the first name of a file in tar order carries it, the others link to
        it; a file unchanged but for new names links them to a name the lower layers have
        (one this layer does not write).  A changed file is written at all its names: a
        lower-layer name left alone would keep the old content."""
        changes = sorted(self.out.values(), key=sort_key)
        by_ino = {}
        for ch in changes:
            if ch.kind == ENTRY:
                by_ino.setdefault(ch.ino, []).append(ch.path)
        short = {}                # file -> nlink, for files with names this layer does not write
        for ino, paths in by_ino.items():
            nlink = nlinks.get(ino)
            if nlink is None:
                (mode, _u, _g, nlink, *_r), _i = unpack_inode(self._inode(self.new, ino))
                if stat.S_ISDIR(mode):
                    continue
            if nlink > len(paths):
                short[ino] = nlink
        missing = [ino for ino, nlink in short.items() if len(names.get(ino, ())) < nlink]
        if missing:
            names.update(self._names_search(missing))
        dirty = getattr(self, "dirty", set())
        for ino in short:
            emitted = set(by_ino[ino])
            others = sorted(p for p in (self._join(d, n) for d, n in names.get(ino, ())) if p not in emitted)
            if ino in dirty:
                for p in others:
                    self.out[p] = Change(ENTRY, p, ino)
            elif others:
                for p in emitted:
                    self.out[p] = Change(LINK, p, 0, others[0])
        if short:
            changes = sorted(self.out.values(), key=sort_key)
        first = {}
        final = []
        for ch in changes:
            if ch.kind == ENTRY:
                if ch.ino in first:
                    ch = Change(LINK, ch.path, 0, first[ch.ino])
                else:
                    first[ch.ino] = ch.path
            final.append(ch)
        return final

    def _join(self, d, name):
        base = self._path(d)
        return base + b"/" + name if base else name


def _no_dirents(lo, hi):
    """Whether keys in [lo, hi) cannot be dirents: block maps only, or one inode's other items."""
    if lo >= NAMESPACE_END:
        return True
    if hi is None or len(lo) < 9 or lo[:8] != hi[:8]:
        return False
    return lo[8] > C.ITEM_DIRENT or hi <= lo[:8] + bytes((C.ITEM_DIRENT,))


def tree_changes(engine, old_name, new_name):
    """Changes from snapshot old_name (None: from nothing) to snapshot new_name."""
    old = engine.snapshot(old_name)["root"] if old_name else None
    return TreeDiff(engine.store, old, engine.snapshot(new_name)["root"]).changes()
