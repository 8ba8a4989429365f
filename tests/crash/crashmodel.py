"""Helpers of the crash tests: a plain-dict model of file system trees, a driver that
applies each operation to ctrfs and to the model, and an engine-level structural check.

(A module of its own, beside the tests, so test_crash.py reads as the list of workloads and
properties; its basename is unique under tests/: pytest imports test helpers by basename.)"""
import copy
import stat
from dataclasses import dataclass, field

import blake3
import numpy as np

from ctrfs.errors import CorruptError
from ctrfs.format import constants as C
from ctrfs.format.checksum import data_hash
from ctrfs.format.items import unpack_ca
from ctrfs.format.node import child_hashes, hash_of_block
from ctrfs.filesystem import FileSystem

ROOT = C.ROOT_INO


# ---- the model --------------------------------------------------------------------------------
@dataclass
class MDir:
    mode: int = 0o755
    xattrs: dict = field(default_factory=dict)


@dataclass
class MFile:
    data: bytearray = field(default_factory=bytearray)
    mode: int = 0o644
    xattrs: dict = field(default_factory=dict)


@dataclass
class MLink:
    target: bytes = b""
    xattrs: dict = field(default_factory=dict)


def parent_of(path):
    head, _, name = path.rpartition(b"/")
    return head or b"/", name


def canon(model):
    """A model ({path: MDir|MFile|MLink}, hardlinks = one object under several paths) as
    comparable plain data: {path: entry} and the groups of paths naming one file."""
    out, groups = {}, {}
    for path, obj in model.items():
        groups.setdefault(id(obj), []).append(path)
    for path, obj in model.items():
        xa = tuple(sorted(obj.xattrs.items()))
        if isinstance(obj, MDir):
            subdirs = sum(1 for p, o in model.items() if isinstance(o, MDir) and p != b"/"
                          and parent_of(p)[0] == path)
            out[path] = ("d", obj.mode, 2 + subdirs, xa)
        elif isinstance(obj, MFile):
            out[path] = ("f", obj.mode, len(obj.data), blake3.blake3(bytes(obj.data)).hexdigest()[:16],
                         len(groups[id(obj)]), xa)
        else:
            out[path] = ("l", obj.target, xa)
    links = frozenset(frozenset(g) for g in groups.values() if len(g) > 1)
    return out, links


def extract(engine, name):
    """The same plain data, read from a tree through the file system layer."""
    fs = FileSystem(engine, name, writable=False)
    out, inos = {}, {}
    stack = [(b"/", ROOT)]
    while stack:
        path, ino = stack.pop()
        ind = fs.getattr(ino)
        xa = tuple(sorted((n, fs.getxattr(ino, n)) for n in fs.listxattr(ino)))
        inos.setdefault(ino, []).append(path)
        perm = stat.S_IMODE(ind.mode)
        if stat.S_ISDIR(ind.mode):
            out[path] = ("d", perm, ind.nlink, xa)
            for child, cino, _cookie in fs.readdir(ino):
                stack.append(((path if path != b"/" else b"") + b"/" + child, cino))
        elif stat.S_ISREG(ind.mode):
            data = fs.read(ino, 0, ind.size)
            if len(data) != ind.size:
                raise AssertionError(f"{path!r}: read {len(data)} of {ind.size} bytes")
            out[path] = ("f", perm, ind.size, blake3.blake3(data).hexdigest()[:16], ind.nlink, xa)
        elif stat.S_ISLNK(ind.mode):
            out[path] = ("l", fs.readlink(ino), xa)
        else:
            raise AssertionError(f"{path!r}: unexpected mode {ind.mode:o}")
    links = frozenset(frozenset(g) for g in inos.values() if len(g) > 1)
    return out, links


# ---- the driver ---------------------------------------------------------------------------------
class Driver:
    """Applies each operation to the engine and to the model.  `commits` maps checkpoint
    seq -> what that checkpoint must read back as: {snapshot name: (kind, root hash)} and
    {tree name: canonical model}."""

    def __init__(self, engine):
        self.engine = engine
        self.fss = {}
        self.models = {}       # name -> {path: obj}
        self.kinds = {}
        for name, e in engine.snapshots():
            self.kinds[name] = e["kind"]
            self.models[name] = model_from(engine, name)
        self.commits = {}
        self.orphans = []      # (tree, ino) unlinked while open
        self.on_mark = None
        self.record()

    def mark(self):
        """Tell whoever records the device that the set-up part of a workload is over."""
        if self.on_mark is not None:
            self.on_mark()

    def fs(self, tree):
        if tree not in self.fss:
            self.fss[tree] = FileSystem(self.engine, tree)
        return self.fss[tree]

    def ino(self, tree, path):
        fs, ino = self.fs(tree), ROOT
        for part in path.split(b"/"):
            if part:
                ino = fs.lookup(ino, part)
        return ino

    def _parent(self, tree, path):
        head, name = parent_of(path)
        return self.ino(tree, head), name

    # ---- namespace ----
    def mkdir(self, tree, path):
        p, name = self._parent(tree, path)
        self.fs(tree).mkdir(p, name, 0o755)
        self.models[tree][path] = MDir()

    def create(self, tree, path, data=b"", mode=0o644):
        p, name = self._parent(tree, path)
        ind = self.fs(tree).mknod(p, name, stat.S_IFREG | mode)
        self.models[tree][path] = MFile(bytearray(), mode)
        if data:
            self.write(tree, path, 0, data)
        return ind.ino

    def symlink(self, tree, path, target):
        p, name = self._parent(tree, path)
        self.fs(tree).symlink(p, name, target)
        self.models[tree][path] = MLink(target)

    def link(self, tree, src, dst):
        p, name = self._parent(tree, dst)
        self.fs(tree).link(self.ino(tree, src), p, name)
        self.models[tree][dst] = self.models[tree][src]

    def unlink(self, tree, path):
        p, name = self._parent(tree, path)
        self.fs(tree).unlink(p, name)
        del self.models[tree][path]

    def rmdir(self, tree, path):
        p, name = self._parent(tree, path)
        self.fs(tree).rmdir(p, name)
        del self.models[tree][path]

    def rename(self, tree, src, dst):
        p1, n1 = self._parent(tree, src)
        p2, n2 = self._parent(tree, dst)
        self.fs(tree).rename(p1, n1, p2, n2)
        m = self.models[tree]
        moved = {p: o for p, o in m.items() if p == src or p.startswith(src + b"/")}
        for p in moved:
            del m[p]
        m.update({dst + p[len(src):]: o for p, o in moved.items()})

    def orphan(self, tree, path):
        """Unlink a file that is open: it lives on (an orphan record) until released."""
        ino = self.ino(tree, path)
        self.fs(tree).open(ino)
        self.orphans.append((tree, ino))
        self.unlink(tree, path)

    def release_orphans(self):
        for tree, ino in self.orphans:
            if tree in self.fss:
                self.fss[tree].release(ino)
        self.orphans.clear()

    # ---- contents and attributes ----
    def write(self, tree, path, off, data):
        self.fs(tree).write(self.ino(tree, path), off, data)
        buf = self.models[tree][path].data
        if len(buf) < off:
            buf.extend(bytes(off - len(buf)))
        buf[off:off + len(data)] = data

    def truncate(self, tree, path, size):
        self.fs(tree).setattr(self.ino(tree, path), size=size)
        buf = self.models[tree][path].data
        del buf[size:]
        buf.extend(bytes(size - len(buf)))

    def chmod(self, tree, path, mode):
        self.fs(tree).setattr(self.ino(tree, path), mode=mode)
        self.models[tree][path].mode = mode

    def setxattr(self, tree, path, name, value):
        self.fs(tree).setxattr(self.ino(tree, path), name, value)
        self.models[tree][path].xattrs[name] = value

    def removexattr(self, tree, path, name):
        self.fs(tree).removexattr(self.ino(tree, path), name)
        del self.models[tree][path].xattrs[name]

    # ---- snapshots and commits ----
    def commit(self, image=None, tree=C.DEFAULT_TREE_NAME):
        """Flush every tree's file data, commit (keeping `tree` as `image` if asked)."""
        seq = self.engine.seq
        for fs in self.fss.values():
            fs.data.flush()
        self.engine.commit(snapshot=(tree, image) if image else None)
        assert self.engine.seq == seq + 1
        if image:
            self.kinds[image] = C.SNAP_IMAGE
            self.models[image] = copy.deepcopy(self.models[tree])
        self.record()

    def clone(self, src, dst):
        self.engine.clone(src, dst)
        self.kinds[dst] = C.SNAP_WRITABLE
        self.models[dst] = copy.deepcopy(self.models[src])

    def delete(self, name):
        self.engine.delete(name)
        self.fss.pop(name, None)
        self.orphans = [(t, ino) for t, ino in self.orphans if t != name]
        del self.kinds[name], self.models[name]

    def record(self):
        snaps = {bytes(n): (e["kind"], e["root"][1]) for n, e in self.engine.snapshots()}
        assert set(snaps) == set(self.models), (sorted(snaps), sorted(self.models))
        self.commits[self.engine.seq] = dict(
            snaps=snaps, trees={n: canon(m) for n, m in self.models.items()})


def model_from(engine, name):
    """A model read back from a tree (to go on working from a recovered device)."""
    fs = FileSystem(engine, name, writable=False)
    model, objs = {}, {}
    stack = [(b"/", ROOT)]
    while stack:
        path, ino = stack.pop()
        if ino in objs:
            model[path] = objs[ino]
            continue
        ind = fs.getattr(ino)
        xa = {n: fs.getxattr(ino, n) for n in fs.listxattr(ino)}
        perm = stat.S_IMODE(ind.mode)
        if stat.S_ISDIR(ind.mode):
            obj = MDir(perm, xa)
            for child, cino, _cookie in fs.readdir(ino):
                stack.append(((path if path != b"/" else b"") + b"/" + child, cino))
        elif stat.S_ISLNK(ind.mode):
            obj = MLink(fs.readlink(ino), xa)
        else:
            obj = MFile(bytearray(fs.read(ino, 0, ind.size)), perm, xa)
        model[path] = objs[ino] = obj
    return model


# ---- an engine-level structural check -------------------------------------------------------------
def structural_problems(engine):
    """Walk every tree from the checkpoint; verify every node and data block by its hash,
    key order and bounds, reference counts against the CA index, live counts per segment
    against the usage table, and that nothing live lies in a free segment or past the head."""
    return _Walker(engine).run()


def data_problems(engine):
    """Every data block the CA index lists is where it says, with the content it names."""
    problems = []
    for key, val in engine.ca.scan():
        paddr, _ref, kind = unpack_ca(val)
        if kind != C.BLOCK_DATA:
            continue
        if not engine.log.valid_paddr(paddr) or data_hash(engine.dev.read(paddr)) != key:
            problems.append(f"data block {bytes(key).hex()[:12]} is not at block {paddr}")
    return problems


class _Walker:
    def __init__(self, engine):
        self.e = engine
        self.log = engine.log
        self.dev = engine.dev
        self.problems = []
        self.live = np.zeros(self.log.nsegs, dtype=np.int64)
        self.pinned = np.zeros(self.log.nsegs, dtype=np.int64)
        self.owner = {}               # paddr -> what holds it
        self.fs_nodes = {}            # hash -> (min key, max key) of visited FS nodes
        self.refs = {}                # hash -> expected refcount
        self.kinds = {}               # hash -> BLOCK_NODE / BLOCK_DATA

    def bad(self, msg):
        self.problems.append(msg)

    def claim(self, paddr, what, pinned=False):
        log = self.log
        if not log.valid_paddr(paddr):
            self.bad(f"{what}: block {paddr} outside the segment area")
            return
        s = log.seg_of(paddr)
        if s == log.head_seg and paddr - log.seg_start(s) >= log.head_off:
            self.bad(f"{what}: block {paddr} lies past the log head ({log.head_seg}, {log.head_off})")
        if paddr in self.owner:
            self.bad(f"{what}: block {paddr} also holds {self.owner[paddr]}")
        self.owner[paddr] = what
        (self.pinned if pinned else self.live)[s] += 1

    def run(self):
        e = self.e
        for tree, name in ((e.snaps, "snap"), (e.ca_tree, "ca"), (e.remap, "remap"), (e.usage, "usage")):
            if tree.root is not None:
                self.walk(tree.kind, tree.root, None, None, None, name, system=True)
        for paddr in e.ca.chain:         # CA log blocks (the engine checked their hash links)
            self.claim(paddr, "CA log block")
        try:
            snaps = e.snapshots()
        except CorruptError as exc:
            self.bad(f"snapshot table: {exc}")
            return self.problems
        for name, entry in snaps:
            if entry["root"][0]:
                h = entry["root"][1]
                self.refs[h] = self.refs.get(h, 0) + 1
                self.walk(C.TREE_FS, entry["root"], None, None, None, f"tree {name!r}")
        self.check_ca()
        self.check_usage()
        return self.problems

    def walk(self, kind, ptr, lo, hi, level, what, system=False):
        """Visit a subtree (FS nodes once per hash); returns the (min, max) of its keys."""
        paddr, h = ptr
        if not system and h in self.fs_nodes:
            span = self.fs_nodes[h]
        else:
            span = self._visit(kind, ptr, level, what, system)
        if span is not None and ((lo is not None and span[0] < lo) or (hi is not None and span[1] >= hi)):
            self.bad(f"{what}: node {paddr} has keys outside its parent's range")
        return span

    def _visit(self, kind, ptr, level, what, system):
        paddr, h = ptr
        try:
            nlevel, keys, vals = self.e.store.load_node(kind, ptr)   # CRC and hash verified
        except CorruptError as exc:
            self.bad(f"{what}: node {paddr}: {exc}")
            return None
        if level is not None and nlevel != level:
            self.bad(f"{what}: node {paddr} at level {nlevel}, its parent wants {level}")
        if system:
            self.claim(paddr, f"{what} node", pinned=kind == C.TREE_USAGE)
        else:
            self.kinds[h] = C.BLOCK_NODE
            for ch in child_hashes(kind, nlevel, keys, vals):
                self.refs[ch] = self.refs.get(ch, 0) + 1
        span = (keys[0], keys[-1])
        if nlevel > 0:
            spans = []
            for i, child in enumerate(vals):
                clo = keys[i] if i > 0 else None
                chi = keys[i + 1] if i + 1 < len(keys) else None
                spans.append(self.walk(kind, child, clo, chi, nlevel - 1, what, system))
            span = (spans[0][0], spans[-1][1]) if spans[0] and spans[-1] else None
        elif kind == C.TREE_FS:
            for k, v in zip(keys, vals):
                if len(k) > 8 and k[8] == C.ITEM_BLOCK:
                    self.kinds.setdefault(bytes(v[8:40]), C.BLOCK_DATA)
        if not system:
            self.fs_nodes[h] = span
        return span

    def check_ca(self):
        found = {}
        try:
            for key, val in self.e.ca.scan():
                found[bytes(key)] = unpack_ca(val)
        except CorruptError as exc:
            self.bad(f"CA index: {exc}")
            return
        for h, (paddr, ref, kind) in found.items():
            want = self.refs.get(h, 0)
            if ref != want:
                self.bad(f"CA {h.hex()[:12]}: refcount {ref}, {want} references found")
            if h in self.kinds and kind != self.kinds[h]:
                self.bad(f"CA {h.hex()[:12]}: kind {kind}, used as {self.kinds[h]}")
            if not self.log.valid_paddr(paddr):
                self.bad(f"CA {h.hex()[:12]}: block {paddr} outside the segment area")
                continue
            raw = self.dev.read(paddr)
            try:
                got = data_hash(raw) if kind == C.BLOCK_DATA else hash_of_block(raw)
            except CorruptError:
                got = None
            if got != h:
                self.bad(f"CA {h.hex()[:12]}: block {paddr} does not hold it")
            self.claim(paddr, f"CA {h.hex()[:12]}")
        for h in self.refs:
            if h not in found:
                self.bad(f"block {h.hex()[:12]} referenced but not in the CA index")

    def check_usage(self):
        log = self.log
        for s in np.flatnonzero(self.live != log.live):
            self.bad(f"segment {s}: usage table says {log.live[s]} live blocks, found {self.live[s]}")
        used = (self.live > 0) | (self.pinned > 0)
        for s in np.flatnonzero(used & (log.state == C.SEG_FREE)):
            self.bad(f"segment {s} holds live blocks but is free")
        if log.state[log.head_seg] != C.SEG_OPEN:
            self.bad(f"head segment {log.head_seg} is not open (state {log.state[log.head_seg]})")
