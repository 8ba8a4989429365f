"""Stateful model test of the FS layer: random operations on a FileSystem and on a plain
in-memory model of a POSIX tree; after every step each listing, stat, read and xattr must
agree, and every operation must fail exactly when (and with the errno) Linux would."""
import copy
import errno
import os
import random
import stat
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.errors import FsError
from ctrfs.filesystem import RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE, FileSystem
from ctrfs.format import constants as C
from ctrfs.mkfs.geometry import make_filesystem

BS = 4096
NAMES = [b"a", b"b", b"c", b"d", b"a", b"b", b"n" * 255, b"L" * 256]
XNAMES = [b"user.a", b"user.b", b"trusted.t", b"security.capability"]
OFFSETS = st.one_of(st.integers(0, 3 * BS + 100),
                    st.sampled_from([0, 1, C.INLINE_MAX - 1, C.INLINE_MAX, BS - 1, BS, 2 * BS - 7, 9 * BS + 5]))
SIZES = st.one_of(st.integers(0, 2 * BS + 50),
                  st.sampled_from([1, C.INLINE_MAX, C.INLINE_MAX + 1, BS, 3 * BS, 5 * BS + 3]))
TRUNC = st.one_of(st.integers(0, 4 * BS), st.sampled_from([0, 1, C.INLINE_MAX, C.INLINE_MAX + 1, BS, 12 * BS]))
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"


FTYPE = {"reg": stat.S_IFREG, "dir": stat.S_IFDIR, "lnk": stat.S_IFLNK, "fifo": stat.S_IFIFO, "chr": stat.S_IFCHR}


@dataclass
class MNode:
    kind: str                     # a key of FTYPE
    perm: int
    uid: int = 0
    rdev: int = 0
    data: bytearray = field(default_factory=bytearray)   # file content / symlink target
    xattrs: dict = field(default_factory=dict)
    entries: dict = field(default_factory=dict)          # dir: name -> ino
    parent: int = 0                                      # dir: parent directory ino


class Model:
    def __init__(self):
        self.nodes = {C.ROOT_INO: MNode("dir", 0o755, parent=C.ROOT_INO)}
        self.open = {}                # ino -> open handles

    def forget_handles(self):
        """A new mount: no handle is open, and every unlinked inode is gone."""
        self.open = {}
        for ino in [i for i in self.nodes if i != C.ROOT_INO and self.nlink(i) == 0]:
            del self.nodes[ino]

    def nlink(self, ino):
        n = self.nodes[ino]
        if n.kind == "dir":
            if ino != C.ROOT_INO and ino not in self.nodes[n.parent].entries.values():
                return 0                               # removed while open
            return 2 + sum(self.nodes[i].kind == "dir" for i in n.entries.values())
        return sum(list(d.entries.values()).count(ino) for d in self.nodes.values() if d.kind == "dir")

    def dirs(self):
        """Directories that can take names (not ones removed while open)."""
        return sorted(i for i, n in self.nodes.items() if n.kind == "dir" and not self.orphaned(i))

    def files(self):
        return sorted(i for i, n in self.nodes.items() if n.kind == "reg")

    def entries(self):
        return sorted((p, name) for p in self.dirs() for name in self.nodes[p].entries)

    def is_ancestor(self, anc, ino):
        while True:
            if ino == anc:
                return True
            if ino == C.ROOT_INO:
                return False
            ino = self.nodes[ino].parent

    def drop(self, ino):
        """Forget an inode no name refers to any more (unless it is open)."""
        if (self.nodes[ino].kind == "dir" or self.nlink(ino) == 0) and not self.open.get(ino):
            del self.nodes[ino]

    def orphaned(self, ino):
        return ino != C.ROOT_INO and self.nlink(ino) == 0


def errno_of(fn, *args, **kw):
    try:
        return None, fn(*args, **kw)
    except FsError as exc:
        return exc.errno, None


def name_err(*names):
    return errno.ENAMETOOLONG if any(len(n) > C.NAME_MAX for n in names) else None


class FsModel(RuleBasedStateMachine):
    @initialize(dirty_limit=st.sampled_from([64 << 20, 3 * BS]))
    def setup(self, dirty_limit):
        self.dev = MemoryDevice(bytearray(16 << 20))
        self.engine = make_filesystem(self.dev, segment_blocks=64)
        self.tree = C.DEFAULT_TREE_NAME
        self.dirty_limit = dirty_limit            # small: writes reach the store before commit
        self.fs = self.mount(self.tree)
        self.model = Model()
        self._committed()
        self.images = {}              # image name -> model at the time
        self.ntrees = 0

    # ---- helpers ---------------------------------------------------------------------------
    def mount(self, tree):
        return FileSystem(self.engine, tree, dirty_limit=self.dirty_limit)

    def call(self, want, fn, *args, **kw):
        """Run an FS operation that the model says fails with `want` (None: succeeds)."""
        got, result = errno_of(fn, *args, **kw)
        assert got == want, (fn.__name__, args, "got", got and errno.errorcode[got],
                             "want", want and errno.errorcode[want])
        return result

    def pick_entry(self, data):
        """(parent, name) of an existing entry, or sometimes of a name that is free."""
        entries = self.model.entries()
        if entries and data.draw(st.booleans()):
            return data.draw(st.sampled_from(entries))
        return data.draw(st.sampled_from(self.model.dirs())), data.draw(st.sampled_from(NAMES))

    def pick_dir(self, data):
        return data.draw(st.sampled_from(self.model.dirs()))

    def _create_err(self, parent, name):
        return name_err(name) or (errno.EEXIST if name in self.model.nodes[parent].entries else None)

    def _add(self, parent, name, ind, node):
        assert ind.ino not in self.model.nodes
        self.model.nodes[parent].entries[name] = ind.ino
        self.model.nodes[ind.ino] = node

    # ---- namespace ---------------------------------------------------------------------------
    @rule(data=st.data(), perm=st.sampled_from([0o644, 0o600, 0o755]),
          kind=st.sampled_from(["reg", "reg", "reg", "fifo", "chr"]), uid=st.sampled_from([0, 1000]))
    def create(self, data, perm, kind, uid):
        parent, name = self.pick_dir(data), data.draw(st.sampled_from(NAMES))
        rdev = os.makedev(4, 64) if kind == "chr" else 0
        ind = self.call(self._create_err(parent, name), self.fs.mknod, parent, name, FTYPE[kind] | perm, uid, 0, rdev)
        if ind:
            self._add(parent, name, ind, MNode(kind, perm, uid, rdev))

    @rule(data=st.data(), perm=st.sampled_from([0o755, 0o700]))
    def mkdir(self, data, perm):
        parent, name = self.pick_dir(data), data.draw(st.sampled_from(NAMES))
        ind = self.call(self._create_err(parent, name), self.fs.mkdir, parent, name, perm)
        if ind:
            self._add(parent, name, ind, MNode("dir", perm, parent=parent))

    @rule(data=st.data(), link_to=st.sampled_from([b"t", b"../a/b", b"x" * 1500]))
    def symlink(self, data, link_to):
        parent, name = self.pick_dir(data), data.draw(st.sampled_from(NAMES))
        ind = self.call(self._create_err(parent, name), self.fs.symlink, parent, name, link_to)
        if ind:
            self._add(parent, name, ind, MNode("lnk", 0o777, data=bytearray(link_to)))

    @rule(data=st.data())
    def link(self, data):
        entries = self.model.entries()
        if not entries:
            return
        sp, sn = data.draw(st.sampled_from(entries))
        ino = self.model.nodes[sp].entries[sn]
        parent, name = self.pick_dir(data), data.draw(st.sampled_from(NAMES))
        want = self._create_err(parent, name) or (errno.EPERM if self.model.nodes[ino].kind == "dir" else None)
        if self.call(want, self.fs.link, ino, parent, name):
            self.model.nodes[parent].entries[name] = ino

    @rule(data=st.data())
    def unlink(self, data):
        parent, name = self.pick_entry(data)
        ino = self.model.nodes[parent].entries.get(name)
        want = name_err(name) or (errno.ENOENT if ino is None else
                                  errno.EISDIR if self.model.nodes[ino].kind == "dir" else None)
        self.call(want, self.fs.unlink, parent, name)
        if want is None:
            del self.model.nodes[parent].entries[name]
            self.model.drop(ino)

    @rule(data=st.data())
    def rmdir(self, data):
        parent, name = self.pick_entry(data)
        ino = self.model.nodes[parent].entries.get(name)
        node = self.model.nodes.get(ino)
        want = name_err(name) or (errno.ENOENT if ino is None else
                                  errno.ENOTDIR if node.kind != "dir" else
                                  errno.ENOTEMPTY if node.entries else None)
        self.call(want, self.fs.rmdir, parent, name)
        if want is None:
            del self.model.nodes[parent].entries[name]
            self.model.drop(ino)

    def _rename_err(self, p1, n1, p2, n2, flags):
        """The errno Linux's renameat2 gives, checked in the kernel's order."""
        m = self.model
        if name_err(n1, n2):
            return errno.ENAMETOOLONG
        src = m.nodes[p1].entries.get(n1)
        dst = m.nodes[p2].entries.get(n2)
        if src is None:
            return errno.ENOENT
        if flags & RENAME_NOREPLACE and dst is not None:
            return errno.EEXIST
        if flags & RENAME_EXCHANGE and dst is None:
            return errno.ENOENT
        if p1 != p2:
            if m.nodes[src].kind == "dir" and m.is_ancestor(src, p2):
                return errno.EINVAL
            if dst is not None and m.nodes[dst].kind == "dir" and m.is_ancestor(dst, p1):
                return errno.EINVAL if flags & RENAME_EXCHANGE else errno.ENOTEMPTY
        if src == dst or flags & RENAME_EXCHANGE or dst is None:
            return None
        sdir, ddir = m.nodes[src].kind == "dir", m.nodes[dst].kind == "dir"
        if sdir and not ddir:
            return errno.ENOTDIR
        if ddir and not sdir:
            return errno.EISDIR
        if ddir and m.nodes[dst].entries:
            return errno.ENOTEMPTY
        return None

    @rule(data=st.data(), flags=st.sampled_from([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]))
    def rename(self, data, flags):
        p1, n1 = self.pick_entry(data)
        p2, n2 = self.pick_entry(data)
        want = self._rename_err(p1, n1, p2, n2, flags)
        self.call(want, self.fs.rename, p1, n1, p2, n2, flags)
        if want is not None:
            return
        m = self.model
        src, dst = m.nodes[p1].entries[n1], m.nodes[p2].entries.get(n2)
        if src == dst and not flags & RENAME_EXCHANGE:
            return                                   # hardlinks of one inode: nothing happens
        if flags & RENAME_EXCHANGE:
            m.nodes[p1].entries[n1], m.nodes[p2].entries[n2] = dst, src
            if m.nodes[dst].kind == "dir":
                m.nodes[dst].parent = p1
        else:
            del m.nodes[p1].entries[n1]
            m.nodes[p2].entries[n2] = src
            if dst is not None:
                m.drop(dst)
        if m.nodes[src].kind == "dir":
            m.nodes[src].parent = p2

    # ---- data and attributes -------------------------------------------------------------------
    def pick_file(self, data):
        files = self.model.files()
        return data.draw(st.sampled_from(files)) if files else None

    @rule(data=st.data(), offset=OFFSETS, size=SIZES, seed=st.integers(0, 3))
    def write(self, data, offset, size, seed):
        ino = self.pick_file(data)
        if ino is None:
            return
        buf = bytes(size) if seed == 0 else random.Random(seed * 7919 + size).randbytes(size)
        assert self.fs.write(ino, offset, buf) == size
        content = self.model.nodes[ino].data
        if size:
            if offset > len(content):
                content.extend(bytes(offset - len(content)))
            content[offset:offset + size] = buf

    @rule(data=st.data(), size=TRUNC)
    def truncate(self, data, size):
        ino = self.pick_file(data)
        if ino is None:
            return
        self.fs.setattr(ino, size=size)
        content = self.model.nodes[ino].data
        del content[size:]
        content.extend(bytes(size - len(content)))

    @rule(data=st.data(), offset=OFFSETS, size=SIZES)
    def read(self, data, offset, size):
        ino = self.pick_file(data)
        if ino is not None:
            assert self.fs.read(ino, offset, size) == bytes(self.model.nodes[ino].data[offset:offset + size])

    @rule(data=st.data(), perm=st.sampled_from([0o600, 0o4755, 0o1777]), uid=st.sampled_from([0, 7]))
    def chmod_chown(self, data, perm, uid):
        ino = data.draw(st.sampled_from(sorted(self.model.nodes)))
        if self.model.nodes[ino].kind == "lnk":
            return
        self.fs.setattr(ino, mode=perm, uid=uid)
        self.model.nodes[ino].perm = perm
        self.model.nodes[ino].uid = uid

    # ---- open handles: unlinked files and directories live on until released ------------------
    @rule(data=st.data())
    def open(self, data):
        ino = data.draw(st.sampled_from(sorted(self.model.nodes)))
        self.fs.open(ino)
        self.model.open[ino] = self.model.open.get(ino, 0) + 1

    @precondition(lambda self: self.model.open)
    @rule(data=st.data())
    def release(self, data):
        ino = data.draw(st.sampled_from(sorted(self.model.open)))
        self.fs.release(ino)
        self.model.open[ino] -= 1
        if not self.model.open[ino]:
            del self.model.open[ino]
            if self.model.orphaned(ino):
                del self.model.nodes[ino]

    @rule(data=st.data(), name=st.sampled_from(XNAMES), size=st.sampled_from([0, 1, 100, 1000]),
          flags=st.sampled_from([0, 0, XATTR_CREATE, XATTR_REPLACE]))
    def setxattr(self, data, name, size, flags):
        ino = data.draw(st.sampled_from(sorted(self.model.nodes)))
        xattrs = self.model.nodes[ino].xattrs
        want = (errno.EEXIST if flags == XATTR_CREATE and name in xattrs else
                errno.ENODATA if flags == XATTR_REPLACE and name not in xattrs else None)
        value = random.Random(size).randbytes(size)
        self.call(want, self.fs.setxattr, ino, name, value, flags)
        if want is None:
            xattrs[name] = value

    @rule(data=st.data(), name=st.sampled_from(XNAMES))
    def removexattr(self, data, name):
        ino = data.draw(st.sampled_from(sorted(self.model.nodes)))
        xattrs = self.model.nodes[ino].xattrs
        self.call(None if name in xattrs else errno.ENODATA, self.fs.removexattr, ino, name)
        xattrs.pop(name, None)

    # ---- durability, images, clones --------------------------------------------------------------
    def _committed(self):
        self.committed = (self.tree, copy.deepcopy(self.model), self.engine.seq)

    @rule()
    def commit(self):
        self.fs.commit()
        self._committed()

    @rule()
    def flush(self):
        seq = self.engine.seq
        self.fs.flush()
        if self.engine.seq != seq:           # reclaim may have committed
            self._committed()

    @rule()
    def commit_image_and_clone(self):
        self.ntrees += 1
        image, tree = b"img%d" % self.ntrees, b"tree%d" % self.ntrees
        self.fs.commit(image=image)
        self.images[image] = copy.deepcopy(self.model)
        self.engine.clone(image, tree)
        self.engine.commit()
        self.tree = tree
        self.fs = self.mount(tree)
        self.model.forget_handles()
        self._committed()

    @precondition(lambda self: self.images)
    @rule(data=st.data())
    def check_image(self, data):
        image = data.draw(st.sampled_from(sorted(self.images)))
        model = self.images[image]
        self.compare(FileSystem(self.engine, image, writable=False), model)
        e = self.engine.snapshot(image)
        assert (e["logical_bytes"], e["inodes"]) == (
            sum(len(n.data) for n in model.nodes.values() if n.kind == "reg"), len(model.nodes))

    @rule()
    def reopen(self):
        self.fs.commit()
        self._committed()
        self.engine.close()
        self.engine = Engine.open(MemoryDevice(self.dev.data))
        self.fs = self.mount(self.tree)
        self.model.forget_handles()
        self._committed()

    @rule()
    def crash(self):
        """Reopen from the device without committing: back to the last checkpoint."""
        if self.engine.seq != self.committed[2]:
            return self.reopen()      # the engine committed by itself (reclaim): state unknown
        self.engine.close()           # only ends the writer thread; nothing is committed
        self.engine = Engine.open(MemoryDevice(self.dev.data))
        self.tree, model, _seq = self.committed
        self.model = copy.deepcopy(model)
        self.fs = self.mount(self.tree)
        self.model.forget_handles()

    def teardown(self):
        if hasattr(self, "engine"):
            self.engine.close()

    # ---- the invariant -----------------------------------------------------------------------------
    @invariant()
    def matches_model(self):
        if hasattr(self, "fs"):
            self.compare(self.fs, self.model)

    @staticmethod
    def compare(fs, model):
        seen = set()
        stack = [C.ROOT_INO]
        while stack:
            ino = stack.pop()
            node = model.nodes[ino]
            if ino in seen:
                assert node.kind != "dir"
                continue
            seen.add(ino)
            FsModel.compare_inode(fs, model, ino)
            if node.kind == "dir":
                listing = sorted((name, i) for name, i, _cookie in fs.readdir(ino))
                assert listing == sorted(node.entries.items()), ino
                for name, child in node.entries.items():
                    assert fs.lookup(ino, name) == child
                    stack.append(child)
        for ino in set(model.nodes) - seen:           # unlinked while open
            assert model.orphaned(ino) and (model.open.get(ino) or not fs.writable), ino
            FsModel.compare_inode(fs, model, ino)

    @staticmethod
    def compare_inode(fs, model, ino):
        node = model.nodes[ino]
        a = fs.getattr(ino)
        assert (stat.S_IFMT(a.mode), stat.S_IMODE(a.mode), a.nlink, a.uid, a.rdev) == (
            FTYPE[node.kind], node.perm, model.nlink(ino), node.uid, node.rdev), ino
        assert sorted(fs.listxattr(ino)) == sorted(node.xattrs), ino
        for name, value in node.xattrs.items():
            assert fs.getxattr(ino, name) == value
        if node.kind == "reg":
            assert a.size == len(node.data), ino
            assert fs.read(ino, 0, a.size + 10) == node.data, ino
        elif node.kind == "lnk":
            assert fs.readlink(ino) == node.data


FsModel.TestCase.settings = settings(
    settings.default,
    max_examples=1000 if DEEP else 200,
    stateful_step_count=100 if DEEP else 50,
)
TestFsModel = FsModel.TestCase
