"""The namespace of one FS tree, as fsck sees it: inodes, directory entries, orphan
records, and the problems among them (link counts, unreachable inodes, dangling
entries, malformed items).

`parse_leaf` turns one verified leaf into facts (cached per leaf hash: image and clone
share most leaves); `Namespace` gathers one tree's facts; `plan` finds the problems and,
for the repair kinds allowed, the tree edits that fix them.  Nothing here does I/O."""
import stat
import time

import numpy as np

from .. import acl
from ..errors import CorruptError, FsError
from ..format import constants as C
from ..format.items import (BLOCK_ENTRY_SIZE, NAMESPACE_END, SUPER_SIZE, block_index, dirent_key, key_ino, fs_key, name_hash,
                            pack_dirent, pack_inode, split_fs_key, unpack_dirent, unpack_inode)
from ..format.image import check_image_item

DOTDOT = b".."
LOST_FOUND = b"lost+found"
FILE_TYPES = (stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK,
              stat.S_IFIFO, stat.S_IFSOCK)

# Repair kinds: the -p set is safe (no names appear or vanish); the rest needs -y.
SAFE_KINDS = frozenset({"superblock", "checkpoint", "refcount", "usage", "summary", "linkcount", "inode",
                        "totals"})
ALL_KINDS = SAFE_KINDS | {"namespace", "salvage"}

# Fact tags produced by parse_leaf.
F_INODE, F_DIRENT, F_DOTDOT, F_ITEM, F_ORPHAN, F_SUPER, F_BAD, F_BLOCKS, F_IMAGE = range(9)
S_IFMT, S_IFDIR = 0o170000, stat.S_IFDIR
_BLOCK, _DIRENT = C.ITEM_BLOCK, C.ITEM_DIRENT


def block_map_rows(fixed):
    """Whether every item of a fixed-size leaf is a well-formed block-map item (the shape
    parse_leaf's fast path takes one by one), judged on the whole array at once."""
    if fixed.klen != 17 or fixed.vlen != BLOCK_ENTRY_SIZE:
        return False
    rows = fixed.column(0, 9)
    return bool((rows[:, 8] == _BLOCK).all() and (rows[:, 0] >= 0x80).all()
                and (fixed.u64(0, ">") != C.KEY_CLASS_DATA).all())


def parse_leaf(keys, vals, fixed=None):
    """Facts of one FS leaf: (tag, ...) tuples.  Block map items, the bulk of a tree, are
    summed per inode into one (F_BLOCKS, ino, count, highest index) fact; a leaf of block
    map items only (format.leafarray.FixedLeaf) is summed as arrays."""
    if fixed is not None and block_map_rows(fixed):
        inos = fixed.u64(0, ">") & C.MAX_INO
        index = fixed.u64(9, ">")
        if inos[0] == inos[-1]:               # keys sort by inode, then index: one file
            return [(F_BLOCKS, int(inos[0]), len(inos), int(index[-1]))]
        ends = np.append(np.flatnonzero(inos[1:] != inos[:-1]), len(inos) - 1)
        starts = np.append(0, ends[:-1] + 1)
        return [(F_BLOCKS, i, n, x) for i, n, x in
                zip(inos[ends].tolist(), (ends - starts + 1).tolist(), index[ends].tolist())]
    if fixed is not None:
        keys, vals = fixed.keys(), fixed.vals()
    out = []
    blocks = {}
    for key, val in zip(keys, vals):
        # Fast path for well-formed block items; everything else gets the full judgement.
        if (len(key) == 17 and key[8] == _BLOCK and len(val) == BLOCK_ENTRY_SIZE and key[0] & 0x80
                and key[:8] != NAMESPACE_END):
            ino = key_ino(key)
            idx = block_index(key)
            have = blocks.get(ino)
            blocks[ino] = (1, idx) if have is None else (have[0] + 1, idx if idx > have[1] else have[1])
            continue
        try:
            out.append(_fact(key, val))
        except CorruptError as exc:
            out.append((F_BAD, bytes(key), str(exc)))
    for ino, (n, last) in blocks.items():
        out.append((F_BLOCKS, ino, n, last))
    return out


def _fact(key, val):
    ino, item, sub = split_fs_key(key)
    if ino == 0:
        if item == C.ITEM_IMAGE:
            check_image_item(sub, val)
            return (F_IMAGE,)           # image metadata: checked here, no namespace part
        if item != C.ITEM_SUPER:
            raise CorruptError(f"item type {item} under inode 0")
        if not sub:
            if len(val) != SUPER_SIZE:
                raise CorruptError(f"tree counters item: {len(val)} bytes, want {SUPER_SIZE}")
            return (F_SUPER, int.from_bytes(val[:8], "little"))
        if len(sub) != 8 or val:
            raise CorruptError("malformed orphan record")
        return (F_ORPHAN, int.from_bytes(sub, "big"))
    if item == C.ITEM_SUPER:
        raise CorruptError(f"counters item under inode {ino}")
    if item == C.ITEM_IMAGE:
        raise CorruptError(f"image metadata item under inode {ino}")
    if item == C.ITEM_INODE:
        if sub:
            raise CorruptError(f"inode {ino}: key has {len(sub)} extra bytes")
        fields, inline = unpack_inode(val)
        mode, size, flags = fields[0], fields[5], fields[9]
        if stat.S_IFMT(mode) not in FILE_TYPES:
            raise CorruptError(f"inode {ino}: bad file type in mode {mode:#o}")
        if flags & C.INODE_INLINE and len(inline) != size:
            raise CorruptError(f"inode {ino}: inline data {len(inline)} bytes, size {size}")
        if not flags & C.INODE_INLINE and inline:
            raise CorruptError(f"inode {ino}: {len(inline)} bytes of inline data without the inline flag")
        return (F_INODE, ino, fields, inline)
    if item == C.ITEM_DIRENT:
        if len(sub) < 9:
            raise CorruptError(f"directory {ino}: malformed entry key")
        name = sub[8:]
        if int.from_bytes(sub[:8], "big") != name_hash(name):
            raise CorruptError(f"directory {ino}: entry {show(name)} filed under a wrong name hash")
        if name != DOTDOT and (len(name) > C.NAME_MAX or b"/" in name or b"\0" in name or name == b"."):
            raise CorruptError(f"directory {ino}: bad entry name {show(name)}")
        target, dtype = unpack_dirent(val)
        return (F_DOTDOT if name == DOTDOT else F_DIRENT, ino, name, target, dtype)
    if item == C.ITEM_BLOCK:        # well-formed ones took parse_leaf's fast path
        raise CorruptError(f"inode {ino}: malformed block map item")
    if not sub:
        raise CorruptError(f"inode {ino}: extended attribute without a name")
    if sub in acl.NAMES:            # ctrfs stores only valid, non-empty ACLs
        try:
            entries = acl.parse(val)
        except FsError as exc:
            raise CorruptError(f"inode {ino}: {sub.decode()}: {exc}") from None
        if not entries:
            raise CorruptError(f"inode {ino}: {sub.decode()} without entries")
    return (F_ITEM, ino, item, 0)


class Namespace:
    """One FS tree's facts, gathered from its leaves in key order."""

    def __init__(self):
        self.inodes = {}      # ino -> (fields tuple, inline bytes)
        self.entries = {}     # (dir, name) -> [ino, dtype]  (".." kept apart)
        self.dotdot = {}      # dir -> parent ino
        self.items = {}       # ino -> number of xattr/block items
        self.max_block = {}   # ino -> highest block index mapped
        self.orphans = set()
        self.next_ino = None
        self.bad = []         # (key, reason)

    def add(self, facts):
        for f in facts:
            tag = f[0]
            if tag == F_INODE:
                self.inodes[f[1]] = (f[2], f[3])
            elif tag == F_DIRENT:
                self.entries[(f[1], f[2])] = [f[3], f[4]]
            elif tag == F_DOTDOT:
                self.dotdot[f[1]] = f[3]
            elif tag == F_BLOCKS:
                self.items[f[1]] = self.items.get(f[1], 0) + f[2]
                self.max_block[f[1]] = max(self.max_block.get(f[1], -1), f[3])
            elif tag == F_ITEM:
                self.items[f[1]] = self.items.get(f[1], 0) + 1
            elif tag == F_ORPHAN:
                self.orphans.add(f[1])
            elif tag == F_SUPER:
                self.next_ino = f[1]
            elif tag == F_IMAGE:
                pass
            else:
                self.bad.append((f[1], f[2]))


def show(name):
    """A name for a message: text where it is UTF-8, escapes where not."""
    return "'" + name.decode("utf-8", "backslashreplace") + "'"


def _dtype(mode):
    return stat.S_IFMT(mode) >> 12


def _new_dir(perm):
    """Inode fields of a directory fsck creates (root, lost+found), owned by root."""
    now = time.time_ns()
    return (stat.S_IFDIR | perm, 0, 0, 2, 0, 0, now, now, now, 0, 0)


def _is_dir(fields):
    return fields[0] & S_IFMT == S_IFDIR


def _pack(ino, rec):
    return pack_inode(*rec[0], inline=rec[1])


class Planner:
    """Finds the problems of one namespace and the edits that fix the allowed kinds.

    Works on a copy of the model, applying each fix as it is decided, so later checks
    (link counts last) see the namespace as it will be after the repair."""

    def __init__(self, ns, label, allowed, block_size):
        self.ns = ns
        self.label = label
        self.allowed = allowed
        self.bs = block_size
        self.problems = []    # (check, message, kind)
        self.edits = {}       # key -> value, or None to delete
        self.drop_inos = []   # inodes whose stray items are deleted wholesale
        self.trims = []       # (ino, first block index to unmap)
        self.inodes = dict(ns.inodes)     # records are replaced, never changed in place
        self.entries = {k: list(v) for k, v in ns.entries.items()}
        self.dotdot = dict(ns.dotdot)
        self.orphans = set(ns.orphans)
        self.next_ino = ns.next_ino
        self._names_cache = None

    def report(self, check, kind, msg):
        self.problems.append((check, f"{self.label}: {msg}", kind))
        return kind in self.allowed

    # ---- edits on the model and the tree -------------------------------------------
    def _del_entry(self, d, name):
        self._names_cache = None
        del self.entries[(d, name)]
        self.edits[dirent_key(d, name)] = None

    def _put_entry(self, d, name, ino, dtype):
        self._names_cache = None
        self.entries[(d, name)] = [ino, dtype]
        self.edits[dirent_key(d, name)] = pack_dirent(ino, dtype)

    def _put_dotdot(self, d, parent):
        self.dotdot[d] = parent
        self.edits[dirent_key(d, DOTDOT)] = pack_dirent(parent, stat.S_IFDIR >> 12)

    def _put_inode(self, ino):
        self.edits[fs_key(ino, C.ITEM_INODE)] = _pack(ino, self.inodes[ino])

    def _alloc_ino(self):
        ino = max([self.next_ino or C.FIRST_INO, *[i + 1 for i in self.inodes]])
        self.next_ino = ino + 1
        self.edits[fs_key(0, C.ITEM_SUPER)] = self.next_ino.to_bytes(8, "little") + bytes(8)
        return ino

    # ---- the checks, in order ----------------------------------------------------------
    def run(self):
        self.check_items()
        self.check_root()
        self.check_entries()
        self.check_dir_names()
        self.check_orphan_records()
        self.check_reachable()
        self.check_stray_items()
        self.check_next_ino()
        self.check_sizes()
        self.check_link_counts()
        return self

    def check_items(self):
        for key, reason in self.ns.bad:
            if self.report("check_inodes", "namespace", f"malformed item {key.hex()[:40]}: {reason}"):
                self.edits[key] = None

    def check_root(self):
        root = self.inodes.get(C.ROOT_INO)
        if root is not None and _is_dir(root[0]):
            return
        what = "missing" if root is None else f"not a directory (mode {root[0][0]:#o})"
        if self.report("check_directories", "namespace", f"root directory {what}"):
            self.inodes[C.ROOT_INO] = (_new_dir(0o755), b"")
            self._put_inode(C.ROOT_INO)
            self._put_dotdot(C.ROOT_INO, C.ROOT_INO)

    def check_entries(self):
        for (d, name), (ino, dtype) in list(self.entries.items()):   # in tree order
            parent = self.inodes.get(d)
            if parent is None or not _is_dir(parent[0]):
                what = "missing inode" if parent is None else "non-directory"
                if self.report("check_orphans", "namespace", f"entry {show(name)} in {what} {d}"):
                    self._del_entry(d, name)
                continue
            target = self.inodes.get(ino)
            if target is None:
                if self.report("check_orphans", "namespace",
                               f"directory {d}: entry {show(name)} names missing inode {ino}"):
                    self._del_entry(d, name)
                continue
            want = _dtype(target[0][0])
            if dtype != want and self.report("check_directories", "inode", f"directory {d}: entry "
                                             f"{show(name)} has type {dtype}, inode {ino} is type {want}"):
                self._put_entry(d, name, ino, want)
        for d in sorted(self.dotdot):
            rec = self.inodes.get(d)
            if rec is None or not _is_dir(rec[0]):
                what = "missing" if rec is None else "non-directory"
                if self.report("check_orphans", "namespace", f"'..' entry of {what} inode {d}"):
                    self.dotdot.pop(d)
                    self.edits[dirent_key(d, DOTDOT)] = None

    def _names(self):
        """ino -> [(dir, name)] naming it (cached until an entry changes)."""
        if self._names_cache is None:
            names = {}
            for (d, name), (ino, _t) in self.entries.items():
                names.setdefault(ino, []).append((d, name))
            self._names_cache = names
        return self._names_cache

    def check_dir_names(self):
        """A directory has one name (the root none) and '..' naming the directory that holds it."""
        for ino, where in list(self._names().items()):
            rec = self.inodes.get(ino)
            if rec is None or not _is_dir(rec[0]):
                continue
            if ino == C.ROOT_INO or len(where) > 1:
                first = sorted(where, key=lambda w: w[0] != self.dotdot.get(ino))[:1]
                keep = [] if ino == C.ROOT_INO else first     # the one '..' agrees with
                drop = [w for w in where if w not in keep]
                if self.report("check_directories", "namespace",
                               f"directory {ino} has {len(where)} names, keeping {len(keep)}"):
                    for d, name in drop:
                        self._del_entry(d, name)
        names = self._names()
        for ino, rec in self.inodes.items():
            if not _is_dir(rec[0]):
                continue
            where = names.get(ino)
            want = C.ROOT_INO if ino == C.ROOT_INO else (where[0][0] if where else None)
            have = self.dotdot.get(ino)
            if want is not None and have != want:
                if self.report("check_directories", "inode",
                               f"directory {ino}: '..' is {have}, parent is {want}"):
                    self._put_dotdot(ino, want)

    def check_orphan_records(self):
        names = self._names()
        for ino in sorted(self.orphans):
            rec = self.inodes.get(ino)
            if rec is not None and not names.get(ino) and rec[0][3] == 0:
                continue   # unlinked while open: the next read-write mount frees it
            why = "missing inode" if rec is None else "inode that is still linked"
            if self.report("check_orphans", "namespace", f"orphan record for {why} {ino}"):
                self.orphans.discard(ino)
                self.edits[fs_key(0, C.ITEM_SUPER, ino.to_bytes(8, "big"))] = None

    def _reachable(self):
        children = {}
        for (d, _name), (ino, _t) in self.entries.items():
            children.setdefault(d, []).append(ino)
        seen = {C.ROOT_INO} if C.ROOT_INO in self.inodes else set()
        todo = list(seen)
        while todo:
            for ino in children.get(todo.pop(), ()):
                if ino not in seen and ino in self.inodes:
                    seen.add(ino)
                    if _is_dir(self.inodes[ino][0]):
                        todo.append(ino)
        return seen

    def check_reachable(self):
        seen = self._reachable()
        lost = sorted(i for i in self.inodes if i not in seen and i not in self.orphans)
        self.unreachable = set(lost)
        if not lost:
            return
        for ino in lost:
            mode = self.inodes[ino][0][0]
            self.report("check_orphans", "namespace", f"inode {ino} (mode {mode:#o}) is not reachable "
                                                      "from the root directory")
        if "namespace" not in self.allowed or C.ROOT_INO not in self.inodes:
            return
        # Move the tops of the unreachable parts (directories first, so their contents
        # come along), breaking directory cycles at the lowest inode number.
        lf = self._lost_found()
        names = self._names()
        while True:
            seen = self._reachable()
            lost = [i for i in sorted(self.inodes) if i not in seen and i not in self.orphans]
            if not lost:
                break
            dirs = [i for i in lost if _is_dir(self.inodes[i][0])]
            lostset = set(lost)
            tops = [i for i in dirs if not any(d in lostset for d, _n in names.get(i, ()))]
            tops = tops or dirs[:1] or lost
            for ino in tops:
                for d, name in names.get(ino, ()) if _is_dir(self.inodes[ino][0]) else ():
                    if (d, name) in self.entries:
                        self._del_entry(d, name)
                self._link_into(lf, ino)
            names = self._names()
        self.unreachable = set()

    def _lost_found(self):
        e = self.entries.get((C.ROOT_INO, LOST_FOUND))
        if e is not None and e[0] in self.inodes and _is_dir(self.inodes[e[0]][0]):
            return e[0]
        if e is not None:
            self._del_entry(C.ROOT_INO, LOST_FOUND)
        ino = self._alloc_ino()
        self.inodes[ino] = (_new_dir(0o700), b"")
        self._put_inode(ino)
        self._put_entry(C.ROOT_INO, LOST_FOUND, ino, stat.S_IFDIR >> 12)
        self._put_dotdot(ino, C.ROOT_INO)
        return ino

    def _link_into(self, lf, ino):
        name, n = b"#%d" % ino, 0
        while (lf, name) in self.entries:
            n += 1
            name = b"#%d.%d" % (ino, n)
        rec = self.inodes[ino]
        self._put_entry(lf, name, ino, _dtype(rec[0][0]))
        if _is_dir(rec[0]):
            self._put_dotdot(ino, lf)

    def check_stray_items(self):
        for ino in sorted(set(self.ns.items) - set(self.inodes)):
            if self.report("check_orphans", "namespace",
                           f"{self.ns.items[ino]} attribute/block items of missing inode {ino}"):
                self.drop_inos.append(ino)

    def check_next_ino(self):
        top = max(self.inodes, default=C.ROOT_INO)
        nxt = self.next_ino if self.next_ino is not None else C.FIRST_INO
        if nxt <= top:
            if self.report("check_inodes", "inode", f"next inode number {nxt}, but inode {top} exists"):
                self.next_ino = top + 1
                self.edits[fs_key(0, C.ITEM_SUPER)] = self.next_ino.to_bytes(8, "little") + bytes(8)

    def check_sizes(self):
        for ino, last in self.ns.max_block.items():
            rec = self.inodes.get(ino)
            if rec is None:
                continue
            fields = rec[0]
            inline = bool(fields[9] & C.INODE_INLINE)
            keep = 0 if inline else -(-fields[5] // self.bs)
            if last >= keep and self.report("check_inodes", "inode",
                                            f"inode {ino}: block {last} mapped beyond its size {fields[5]}"
                                            f"{' (inline data)' if inline else ''}"):
                self.trims.append((ino, keep))

    def check_link_counts(self):
        count = {ino: 0 for ino in self.inodes}
        for (d, _name), (ino, _t) in self.entries.items():
            if ino in count and d in self.inodes:
                rec = self.inodes[ino]
                count[ino] += 1
                if _is_dir(rec[0]):
                    count[d] += 1
        for ino, rec in list(self.inodes.items()):
            if ino in self.unreachable:
                continue   # reported as unreachable; its count is decided with its new name
            want = count[ino] + (1 if _is_dir(rec[0]) else 0)
            if ino == C.ROOT_INO:
                want += 1
            if rec[0][3] != want and self.report("check_link_counts", "linkcount",
                                                 f"inode {ino}: link count {rec[0][3]}, found {want}"):
                fields = list(rec[0])
                fields[3] = want
                self.inodes[ino] = (tuple(fields), rec[1])
                self._put_inode(ino)


def plan(ns, label, allowed=ALL_KINDS, block_size=C.DEFAULT_BLOCK_SIZE):
    """Problems (check, message, repair kind) of one namespace, and its Planner (edits)."""
    return Planner(ns, label, allowed, block_size).run()
