"""The pyfuse3 Operations of a session serving many trees.  Each request's inode (or file
handle) names a view by its slot (ctrfs.daemon.kino); the mux strips the slot and hands
the request to that view's fs.Operations, whose replies carry kernel numbers again.  The
session root is a directory of its own listing the views by slot number.

Only FUSEError leaves a handler: a request for a view that has ended is ESTALE."""
import errno
import logging
import stat
import time

import pyfuse3
from pyfuse3 import FUSEError

from ..format import constants as C
from . import kino

log = logging.getLogger("ctrfs.daemon")
ROOT = kino.SESSION_ROOT


def _routed(name):
    """A handler whose first argument is an inode (or a file handle) of some view."""
    async def method(self, first, *args):
        view, ino = self.route(first)
        if view is None:
            raise FUSEError(errno.EPERM if first == ROOT else errno.ESTALE)
        with self.daemon.turns:
            return await getattr(view.ops, name)(ino, *args)
    method.__name__ = name
    return method


def _taking_turns(cls):
    """Every handler defined here holds the engine's turn (ctrfs.daemon.turns) while it
    runs; fs.Operations' handlers never suspend, so no turn is held across an await."""
    for name in ("lookup", "getattr", "opendir", "readdir", "releasedir", "forget", "statfs",
                 "open", "create", "release", "link", "rename"):
        fn = cls.__dict__[name]

        def make(fn):
            async def method(self, *args):
                with self.daemon.turns:
                    return await fn(self, *args)
            method.__name__ = fn.__name__
            return method
        setattr(cls, name, make(fn))
    return cls


@_taking_turns
class MuxOperations(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_acl = True

    readonly = False              # (for mount.serve: start the committer, i.e. tasks)

    def __init__(self, daemon):
        super().__init__()
        self.daemon = daemon
        self.started_ns = time.time_ns()
        # one session for every view: the writeback cache (see fs.py, "Fewer requests")
        # is on whenever the engine can write; read-only views never dirty a page
        self.enable_writeback_cache = not daemon.engine.readonly

    async def committer(self):
        await self.daemon.tasks()

    def shutdown(self):
        self.daemon.shutdown()

    # ---- routing ---------------------------------------------------------------------
    def route(self, number):
        slot, ino = kino.split(number)
        view = self.daemon.views.get(slot) if slot else None
        return view, ino

    def _view(self, number):
        view, ino = self.route(number)
        if view is None:
            raise FUSEError(errno.EPERM if number == ROOT else errno.ESTALE)
        return view, ino

    def _root_attr(self):
        a = pyfuse3.EntryAttributes()
        a.st_ino = ROOT
        a.st_mode = stat.S_IFDIR | 0o755
        a.st_nlink = 2 + len(self.daemon.views)
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self.started_ns
        a.entry_timeout = a.attr_timeout = 0
        return a

    # ---- the session root ----------------------------------------------------------
    async def lookup(self, parent, name, ctx):
        if parent != ROOT:
            view, ino = self._view(parent)
            return await view.ops.lookup(ino, name, ctx)
        if name in (b".", b".."):
            return self._root_attr()
        view = self.daemon.views.get(int(name)) if name.isdigit() else None
        if view is None:
            raise FUSEError(errno.ENOENT)
        attr = view.root_attr()
        attr.entry_timeout = 0        # asked again at each bind: an ended view's name goes
        return attr

    async def getattr(self, inode, ctx):
        if inode == ROOT:
            return self._root_attr()
        view, ino = self._view(inode)
        return await view.ops.getattr(ino, ctx)

    async def opendir(self, inode, ctx):
        if inode == ROOT:
            return ROOT
        view, ino = self._view(inode)
        fh = await view.ops.opendir(ino, ctx)
        view.handles += 1
        return kino.join(view.slot, fh)

    async def readdir(self, fh, start_id, token):
        if fh != ROOT:
            view, ino = self._view(fh)
            return await view.ops.readdir(ino, start_id, token)
        for slot in sorted(s for s in self.daemon.views if s > start_id):
            view = self.daemon.views[slot]
            try:
                attr = view.ops._attr(view.fs.getattr(pyfuse3.ROOT_INODE))
            except Exception:
                log.exception("readdir of the session root: view %d", slot)
                raise FUSEError(errno.EIO) from None
            if not pyfuse3.readdir_reply(token, str(slot).encode(), attr, slot):
                return
            view.ops._count(pyfuse3.ROOT_INODE)

    async def releasedir(self, fh):
        if fh == ROOT:
            return
        view, ino = self.route(fh)
        if view is not None:
            view.handles -= 1
            await view.ops.releasedir(ino)
            self.daemon.maybe_end(view)

    async def forget(self, inode_list):
        by_view = {}
        for number, n in inode_list:
            view, ino = self.route(number)
            if view is not None:
                by_view.setdefault(view.slot, (view, []))[1].append((ino, n))
        for view, items in by_view.values():
            await view.ops.forget(items)

    async def statfs(self, ctx):
        views = list(self.daemon.views.values())
        if not views:
            raise FUSEError(errno.ENODEV)
        s = await views[0].ops.statfs(ctx)
        # inodes: every served tree's live ones (one tree: exactly a single mount's figure)
        s.f_files = sum(v.fs.inodes.live() for v in views) + s.f_ffree
        return s

    # ---- files (handles carry the slot) ---------------------------------------------------
    async def open(self, inode, flags, ctx):
        view, ino = self._view(inode)
        fi = await view.ops.open(ino, flags, ctx)
        view.handles += 1
        fi.fh = kino.join(view.slot, fi.fh)
        return fi

    async def create(self, parent, name, mode, flags, ctx):
        view, ino = self._view(parent)
        fi, attr = await view.ops.create(ino, name, mode, flags, ctx)
        view.handles += 1
        fi.fh = kino.join(view.slot, fi.fh)
        return fi, attr

    async def release(self, fh):
        view, ino = self.route(fh)
        if view is None:
            return
        view.handles -= 1
        try:
            await view.ops.release(ino)
        finally:
            self.daemon.maybe_end(view)

    # ---- two inodes: both in one view (the kernel refuses cross-mount links anyway) ----------
    async def link(self, inode, new_parent, new_name, ctx):
        view, ino = self._view(inode)
        other, parent = self._view(new_parent)
        if other is not view:
            raise FUSEError(errno.EXDEV)
        return await view.ops.link(ino, parent, new_name, ctx)

    async def rename(self, parent_old, name_old, parent_new, name_new, flags, ctx):
        view, p1 = self._view(parent_old)
        other, p2 = self._view(parent_new)
        if other is not view:
            raise FUSEError(errno.EXDEV)
        return await view.ops.rename(p1, name_old, p2, name_new, flags, ctx)

    setattr = _routed("setattr")
    access = _routed("access")
    mknod = _routed("mknod")
    mkdir = _routed("mkdir")
    symlink = _routed("symlink")
    readlink = _routed("readlink")
    unlink = _routed("unlink")
    rmdir = _routed("rmdir")
    fsyncdir = _routed("fsyncdir")
    read = _routed("read")
    write = _routed("write")
    flush = _routed("flush")
    fsync = _routed("fsync")
    getxattr = _routed("getxattr")
    setxattr = _routed("setxattr")
    listxattr = _routed("listxattr")
    removexattr = _routed("removexattr")


assert C.ROOT_INO == pyfuse3.ROOT_INODE == ROOT
