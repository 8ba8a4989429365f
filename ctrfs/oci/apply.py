"""Apply one layer's events (tarlayer.read_layer) to a writable FS tree, in process, with
OCI/docker semantics:
- `.wh.NAME` removes NAME of the lower layers, `.wh..wh..opq` empties a directory of
  them; what this layer itself adds stays;
- a later entry replaces an earlier one (a directory over a directory keeps its
  children); missing parents are created (0755, root, the member's time);
- symlinks are stored verbatim and never followed: a symlink on the way to a member, a
  hardlink to a directory, outside the tree or to a name not yet present is refused.

Times are the archive's: a directory this layer changes without naming it keeps its
times, and ctime is set to mtime, so the same layer gives the same tree (and root hash)
wherever and whenever it is imported."""
import errno
import os
import stat

from ..errors import BadImageError, FsError, NoSpaceError
from ..format import constants as C
from . import tarlayer as T

DT_DIR, DT_LNK = stat.S_IFDIR >> 12, stat.S_IFLNK >> 12


def show(path):
    return "/" + b"/".join(path).decode("utf-8", "replace")


class LayerApplier:
    def __init__(self, fs, what="layer"):
        self.fs = fs
        self.what = what
        self.mine = set()          # paths this layer has written (whiteouts spare them)
        self.saved = {}            # ino -> (atime, mtime, ctime) before this layer touched it
        self.final = {}            # ino -> (atime, mtime) the archive gives it
        self.dirs = {(): C.ROOT_INO}   # path -> directory inode, while nothing is removed
        self.files = 0
        self.bytes = 0
        self._ino = None           # the regular file taking data pieces
        self._size = 0

    # ---- the event loop ------------------------------------------------------------------
    def apply(self, events, progress=None, pause=None):
        """pause(): called between members (a daemon lets its FUSE requests run there)."""
        for ev in events:
            if pause is not None:
                pause()
            if type(ev) is tuple:
                self._data(*ev)
                if progress is not None:
                    progress(len(ev[1]))
            else:
                self._close_file()
                try:
                    self.entry(ev)
                except FsError as exc:
                    raise BadImageError(f"{self.what}: {show(ev.path)}: {exc_text(exc)}") from None
        self.finish()

    def _close_file(self):
        """A sparse file's size reaches past its last data region: set it at the end."""
        if self._ino is not None:
            if self.fs.inodes.get(self._ino).size < self._size:
                self.fs.setattr(self._ino, size=self._size)
            self._ino = None

    def finish(self):
        self._close_file()
        fs = self.fs
        for ino, (a, m, c) in self.saved.items():
            if ino not in self.final and fs.inodes.exists(ino):
                fs.setattr(ino, atime_ns=a, mtime_ns=m, ctime_ns=c)
        for ino, (a, m) in self.final.items():
            if fs.inodes.exists(ino):
                fs.setattr(ino, atime_ns=a, mtime_ns=m, ctime_ns=m)

    # ---- helpers -------------------------------------------------------------------------------
    def refuse(self, path, why):
        raise BadImageError(f"{self.what}: {show(path)}: {why}")

    def _save(self, ino):
        if ino not in self.saved and ino not in self.final:
            ind = self.fs.inodes.get(ino)
            self.saved[ino] = (ind.atime_ns, ind.mtime_ns, ind.ctime_ns)

    def _dir(self, path, make_time=None):
        """The directory inode at path, walking from the root without following symlinks;
        make_time: create missing ones (else None when missing)."""
        ino = self.dirs.get(path)
        if ino is not None:
            return ino
        parent = self._dir(path[:-1], make_time)
        if parent is None:
            return None
        e = self.fs._entry(parent, path[-1])
        if e is None:
            if make_time is None:
                return None
            self._save(parent)
            ino = self.fs.mkdir(parent, path[-1], 0o755, 0, 0).ino
            self.final[ino] = (make_time, make_time)
            self.mine.add(path)
        elif e[1] == DT_LNK:
            self.refuse(path, "a symlink used as a directory on the way to a later member")
        elif e[1] != DT_DIR:
            self.refuse(path, "not a directory, but a later member is inside it")
        else:
            ino = e[0]
        self.dirs[path] = ino
        return ino

    def _remove(self, parent, name):
        """Remove parent/name and everything under it (rm -rf, never following symlinks)."""
        fs = self.fs
        e = fs._entry(parent, name)
        if e is None:
            return
        self._save(parent)
        self.dirs = {(): C.ROOT_INO}
        if e[1] == DT_DIR:
            stack = [(parent, name, e[0], False)]
            while stack:
                p, n, ino, listed = stack.pop()
                if listed:
                    fs.rmdir(p, n)
                    continue
                stack.append((p, n, ino, True))
                for cname, cino, _cookie in list(fs.readdir(ino)):
                    ce = fs._entry(ino, cname)
                    if ce[1] == DT_DIR:
                        stack.append((ino, cname, cino, False))
                    else:
                        self._save(cino)
                        fs.unlink(ino, cname)
        else:
            self._save(e[0])
            fs.unlink(parent, name)

    # ---- entries ---------------------------------------------------------------------------------
    def entry(self, e):
        fs = self.fs
        kind, path = e.kind, e.path
        if kind == T.WHITEOUT_KIND:
            parent = self._dir(path[:-1])
            if parent is not None and path not in self.mine:
                self._remove(parent, path[-1])
            return
        if kind == T.OPAQUE_KIND:
            ino = self._dir(path, make_time=0)
            for name, _cino, _cookie in list(fs.readdir(ino)):
                if path + (name,) not in self.mine:
                    self._remove(ino, name)
            return
        if not path:
            if kind != T.DIR:
                self.refuse(path, f"the root must be a directory, not a {kind}")
            self._meta(C.ROOT_INO, e, new=False)
            return
        parent = self._dir(path[:-1], make_time=e.mtime_ns)
        name = path[-1]
        old = fs._entry(parent, name)
        target = self._link_target(e) if kind == T.HARDLINK else None
        if old is not None:
            if kind == T.DIR and old[1] == DT_DIR:
                self.mine.add(path)
                self._meta(old[0], e, new=False)
                return
            if target is not None and target == old[0]:
                self.mine.add(path)
                return                              # a link to itself: already so
            self._remove(parent, name)
        self._save(parent)
        self.mine.add(path)
        if kind == T.HARDLINK:
            self._save(target)
            fs.link(target, parent, name)
            return
        if kind == T.DIR:
            ino = fs.mkdir(parent, name, e.mode, e.uid, e.gid).ino
            self.dirs[path] = ino
        elif kind == T.SYMLINK:
            if not e.link:
                self.refuse(path, "symlink with an empty target")
            ino = fs.symlink(parent, name, e.link, e.uid, e.gid).ino
        else:
            ino = fs.mknod(parent, name, e.st_mode(), e.uid, e.gid, e.rdev).ino
            if kind == T.FILE:
                self.files += 1
                self._ino, self._size = ino, e.size
        self._meta(ino, e, new=True)

    def _link_target(self, e):
        tpath = e.link
        if not tpath:
            self.refuse(e.path, "hardlink to the root directory")
        parent = self._dir(tpath[:-1])
        t = self.fs._entry(parent, tpath[-1]) if parent is not None else None
        if t is None:
            self.refuse(e.path, f"hardlink to {show(tpath)}, which is not (yet) in the tree")
        if t[1] == DT_DIR:
            self.refuse(e.path, f"hardlink to the directory {show(tpath)}")
        return t[0]

    def _meta(self, ino, e, new):
        fs = self.fs
        if not new:
            self._save(ino)
            for xname in fs.listxattr(ino):
                if xname not in e.xattrs:
                    fs.removexattr(ino, xname)
            fs.setattr(ino, mode=e.mode, uid=e.uid, gid=e.gid)
        for xname, value in e.xattrs.items():
            try:
                fs.setxattr(ino, xname, value)
            except FsError as exc:
                if exc.errno != errno.EOPNOTSUPP:   # a namespace ctrfs does not hold: skipped
                    raise
        self.final[ino] = (e.atime_ns, e.mtime_ns)

    def _data(self, offset, piece, hashes=None):
        fs = self.fs
        if hashes is not None:
            n = fs.write_hashed(self._ino, offset, piece, hashes)
            if n == len(piece):
                self.bytes += n
                return
            offset, piece = offset + n, piece[n:]
        mv = memoryview(piece)
        while mv:
            n = fs.write(self._ino, offset, mv)
            if n <= 0:
                raise NoSpaceError("no space left on the device")
            offset += n
            mv = mv[n:]
            self.bytes += n


def exc_text(exc):
    return os.strerror(exc.errno).lower()
