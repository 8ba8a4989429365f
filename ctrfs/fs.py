"""pyfuse3 Operations over a FileSystem.  The handlers only translate (arguments in,
EntryAttributes out); the logic lives in ctrfs.filesystem, which tests drive without FUSE.

Only FUSEError may leave a handler (anything else kills pyfuse3's loop and hangs the
mount): `handler` maps FsError/CtrfsError to their errno and logs anything unexpected
as EIO.

Reference counts.  The kernel holds a lookup count per inode (every reply carrying an
entry adds one, FORGET drops them); while it is non-zero the inode counts as open in
the FileSystem, as does every open file handle.  So an inode whose last name goes away
while the kernel still knows it (an open file, a working directory) lives on with
nlink 0 and is freed at the last release/forget (or at the next mount, as an orphan, if
the daemon dies first).

Kernel capabilities libfuse turns on by default (pyfuse3 cannot turn them off):
ATOMIC_O_TRUNC, so open() truncates for O_TRUNC; HANDLE_KILLPRIV, so the file system,
not the kernel, clears set-user-ID and set-group-ID bits when a file is written,
truncated or changes owner.

Fewer requests.  A request costs far more in the loop than in these handlers, so the
mount is set up for the kernel to send as few as it can:
- Long entry/attribute timeouts on every tree: an image never changes, and a writable
  tree changes only through this mount, whose every change the kernel sees (it drops
  what it cached for the inodes a reply changes).  Where the daemon changes attributes
  on its own (set-ID bits dropped by a write), it tells the kernel (invalidate_inode).
- The writeback cache on writable trees: write(2) fills the page cache and the kernel
  sends whole pages (up to 1 MiB per WRITE) when it writes back, at the latest at
  close() (the kernel writes a file's dirty pages before FLUSH) and at fsync.  The kernel
  then owns a regular file's size and mtime and hands them back by SETATTR.  Data a
  writeback cannot store (ENOSPC) fails close() and fsync() rather than write(), as on
  NFS: the kernel does not ask before it takes a write into its cache.  (Mixing in
  direct_io for writers on a nearly full device was tried: the kernel then keeps a stale
  mtime, and shared mmap of such a file fails.)
- FLUSH is answered ENOSYS: the kernel then never sends it again (it has written the
  dirty pages before it would), and close() costs no round trip.
- GETXATTR of security.capability comes at every write(2) (the kernel checks for file
  capabilities to drop): a miss is remembered per inode until an xattr of it changes.

Caching.  Every open keeps the page cache (keep_cache): file data changes only by
writes that pass through it, so a program run again (every exec of a container's shell)
does not read its binary through FUSE again.

Counting.  With CTRFS_REQUEST_COUNTS=FILE in its environment the daemon counts the
requests by kind and writes them to FILE as JSON at exit (bench/ uses it).
"""
import asyncio
import errno
import collections
import functools
import json
import logging
import os
import queue
import stat
import threading

import pyfuse3
from pyfuse3 import FUSEError

from . import catalogue
from .acl import ACCESS as ACL_ACCESS
from .errors import CtrfsError, FsError, NoSpaceError, UsageError
from .format import constants as C

log = logging.getLogger("ctrfs.fs")

COMMIT_XATTR = b"trusted.ctrfs.commit"   # setxattr on the root: `ctrfs commit MNT NAME`
CAPABILITY_XATTR = b"security.capability"
TIMEOUT = 3600.0          # entry and attribute timeouts (see "Fewer requests")
NO_CAPS_MAX = 1 << 16     # inodes remembered without security.capability
COUNTS_ENV = "CTRFS_REQUEST_COUNTS"
COOKIE_DOT, COOKIE_DOTDOT, COOKIE_BASE = 1, 2, 2   # readdir ids: ".", "..", then FS cookie + 2
COOKIE_MAX = (1 << 63) - 1
assert pyfuse3.ROOT_INODE == C.ROOT_INO


REQUESTS = collections.Counter() if os.environ.get(COUNTS_ENV) else None


def handler(fn):
    """Run a sync handler body; only FUSEError gets out."""
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(self, *args):
        if REQUESTS is not None:
            REQUESTS[name] += 1
        try:
            return fn(self, *args)
        except FUSEError:
            raise
        except FsError as exc:
            raise FUSEError(exc.errno) from None
        except NoSpaceError:
            raise FUSEError(errno.ENOSPC) from None
        except CtrfsError as exc:
            log.error("%s: %s", fn.__name__, exc)
            raise FUSEError(exc.errno) from None
        except Exception:
            log.exception("%s%r failed", fn.__name__, args[:2])
            raise FUSEError(errno.EIO) from None
    return wrapper


def save_request_counts():
    """Write the request counts (CTRFS_REQUEST_COUNTS) as JSON; nothing when not counting."""
    path = os.environ.get(COUNTS_ENV)
    if REQUESTS is not None and path:
        with open(path, "w") as f:
            json.dump(dict(REQUESTS.most_common()), f, indent=1)


class Invalidator:
    """Tells the kernel about attributes the daemon changed on its own.  A thread of its
    own: pyfuse3's notifications block in the kernel, which may wait for this very loop
    (writeback of the inode's pages)."""

    def __init__(self):
        self.queue = queue.SimpleQueue()
        self.thread = None

    def attrs(self, ino):
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="ctrfs-inval", daemon=True)
            self.thread.start()
        self.queue.put(ino)

    def _run(self):
        while (ino := self.queue.get()) is not None:
            try:
                pyfuse3.invalidate_inode(ino, attr_only=True)
            except (OSError, RuntimeError) as exc:     # gone from the kernel, or unmounted
                log.debug("invalidate_inode(%d): %s", ino, exc)

    def stop(self):
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join(5)
            self.thread = None


class Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_acl = True               # FUSE_POSIX_ACL: the kernel checks and caches ACLs

    def __init__(self, fs, *, fsync="ignore", commit_interval=5.0):
        super().__init__()
        self.fs = fs
        self.engine = fs.engine
        self.readonly = not fs.writable
        self.enable_writeback_cache = fs.writable   # read by pyfuse3 at FUSE_INIT
        self.timeout = TIMEOUT
        self.honor_fsync = fsync == "honor"
        self.commit_interval = commit_interval
        self.lookups = {}               # ino -> kernel lookup count
        self.privileged = set()         # inos opened with set-ID bits (HANDLE_KILLPRIV)
        self.no_caps = set()            # inos known to have no security.capability
        self.invalidate = Invalidator()
        self.bs = self.engine.block_size

    # ---- helpers ----------------------------------------------------------------------
    def _attr(self, ind):
        a = pyfuse3.EntryAttributes()
        a.st_ino = ind.ino
        a.generation = ind.generation
        a.entry_timeout = a.attr_timeout = self.timeout
        a.st_mode = ind.mode
        a.st_nlink = ind.nlink
        a.st_uid = ind.uid
        a.st_gid = ind.gid
        a.st_rdev = ind.rdev
        a.st_size = ind.size
        a.st_blksize = self.bs
        a.st_blocks = -(-ind.size // self.bs) * (self.bs // 512)
        a.st_atime_ns = ind.atime_ns
        a.st_mtime_ns = ind.mtime_ns
        a.st_ctime_ns = ind.ctime_ns
        return a

    def kernel_ino(self, ino):
        """The number the kernel knows the inode by (a daemon's view adds its slot)."""
        return ino

    def _ref(self, ind):
        """An entry reply: the kernel's lookup count of ind.ino goes up by one."""
        self._count(ind.ino)
        return self._attr(ind)

    def _count(self, ino):
        n = self.lookups.get(ino, 0)
        if n == 0:
            self.fs.open(ino)
        self.lookups[ino] = n + 1

    def _in_group(self, ino, ctx):
        """Whether the caller may keep set-group-ID when it sets an access ACL: in the file's
        group, or root (for CAP_FSETID).  Without FUSE_SETXATTR_EXT (pyfuse3 cannot ask for
        it) the kernel does not tell us, so we look."""
        gid = self.fs.getattr(ino).gid
        return ctx.uid == 0 or ctx.gid == gid or gid in pyfuse3.get_sup_groups(ctx.pid)

    def _owner(self, parent, ctx, mode):
        """uid, gid and mode of a new inode: a set-group-ID directory passes on its group
        (and, to subdirectories, the bit itself), as on local file systems."""
        pdir = self.fs.getattr(parent)
        if pdir.mode & stat.S_ISGID:
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
            return ctx.uid, pdir.gid, mode
        return ctx.uid, ctx.gid, mode

    def commit(self, image=None):
        """Flush and checkpoint.  A commit that fails half way leaves the device at its last
        checkpoint and the engine unusable: from then on the mount refuses writes (EROFS),
        like errors=remount-ro."""
        try:
            self.fs.commit(image=image)
        except Exception:
            if self.engine.failed is not None and self.fs.writable:
                log.error("commit failed, the mount is read-only from now on (the device keeps "
                          "its last checkpoint)", exc_info=True)
                self.fs.writable = False
            raise

    def has_changes(self):
        return self.fs.writable and (self.fs.tree.is_dirty() or bool(self.fs.data.dirty))

    async def committer(self):
        """Background task: data reaches the device within commit_interval seconds."""
        while True:
            await asyncio.sleep(self.commit_interval)
            if self.engine.commit_due(self.has_changes(), self.fs.writable):
                try:
                    self.commit()
                except NoSpaceError:
                    log.warning("periodic commit: no space left on the device")
                except Exception:
                    log.exception("periodic commit failed")

    def shutdown(self):
        """After the main loop: drop what the kernel held (frees unlinked open files),
        commit, close the device."""
        try:
            if self.fs.writable:
                for ino in list(self.fs.open_count):
                    self.fs.open_count[ino] = 1
                    self.fs.release(ino)
                self.commit()
        finally:
            self.invalidate.stop()
            self.lookups.clear()
            self.engine.close()
            save_request_counts()

    # ---- lookups and attributes ------------------------------------------------------------
    @handler
    def lookup(self, parent, name, ctx):
        try:
            ino = self.fs.lookup(parent, name)
        except FsError as exc:
            if exc.errno != errno.ENOENT:
                raise
            neg = pyfuse3.EntryAttributes()      # st_ino 0: the kernel caches the miss
            neg.st_ino = 0
            neg.entry_timeout = self.timeout
            return neg
        return self._ref(self.fs.getattr(ino))

    async def forget(self, inode_list):
        # FORGET has no reply: pyfuse3 awaits this outside any try, so not even a
        # FUSEError may leave it.
        if REQUESTS is not None:
            REQUESTS["forget"] += 1
        for ino, n in inode_list:
            try:
                left = self.lookups.get(ino, 0) - n
                if left > 0:
                    self.lookups[ino] = left
                elif self.lookups.pop(ino, None) is not None:
                    self.fs.release(ino)
            except Exception:
                log.exception("forget(%d) failed", ino)

    @handler
    def getattr(self, inode, ctx):
        return self._attr(self.fs.getattr(inode))

    @handler
    def setattr(self, inode, attr, fields, fh, ctx):
        kw = {}
        if fields.update_size:
            kw["size"] = attr.st_size
        if fields.update_mode:
            kw["mode"] = attr.st_mode
        if fields.update_uid:
            kw["uid"] = attr.st_uid
        if fields.update_gid:
            kw["gid"] = attr.st_gid
        if fields.update_atime:
            kw["atime_ns"] = attr.st_atime_ns
        if fields.update_mtime:
            kw["mtime_ns"] = attr.st_mtime_ns
        if fields.update_ctime:
            kw["ctime_ns"] = attr.st_ctime_ns
        if "mode" not in kw and ("uid" in kw or "gid" in kw or ("size" in kw and ctx.uid != 0)):
            self._kill_priv(inode, kw)
        elif ctx.uid != 0 and kw.get("mode", 0) & (stat.S_ISUID | stat.S_ISGID):
            self.privileged.add(inode)
        return self._attr(self.fs.setattr(inode, **kw))

    def _kill_priv(self, ino, kw):
        """HANDLE_KILLPRIV: a chown, or a write or truncate by a caller other than root
        (standing in for CAP_FSETID), of a regular file drops set-user-ID, and
        set-group-ID when group-executable (else it marks mandatory locking)."""
        ind = self.fs.getattr(ino)
        if not ind.is_reg:
            return
        mode = ind.mode & ~stat.S_ISUID
        if mode & stat.S_IXGRP:
            mode &= ~stat.S_ISGID
        if mode != ind.mode:
            kw["mode"] = mode

    @handler
    def access(self, inode, mode, ctx):
        """Only asked without default_permissions (mount.ctrfs always sets it)."""
        ind = self.fs.getattr(inode)
        if mode == os.F_OK:
            return True
        if ctx.uid == 0:
            return not (mode & os.X_OK) or ind.is_dir or bool(ind.mode & 0o111)
        if ctx.uid == ind.uid:
            bits = ind.mode >> 6
        elif ctx.gid == ind.gid or ind.gid in pyfuse3.get_sup_groups(ctx.pid):
            bits = ind.mode >> 3
        else:
            bits = ind.mode
        return mode & ~bits & 7 == 0

    @handler
    def statfs(self, ctx):
        info = self.fs.statfs()
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = info["block_size"]
        s.f_blocks = info["blocks"]
        s.f_bfree = s.f_bavail = info["free"]
        # Inodes of the mounted tree: used = its live inodes; free = what the free space
        # bounds (inodes are items in the tree, one per free block at the least).
        s.f_ffree = s.f_favail = info["free"]
        s.f_files = self.fs.inodes.live() + info["free"]
        s.f_namemax = C.NAME_MAX
        return s

    # ---- namespace -----------------------------------------------------------------------------
    @handler
    def mknod(self, parent, name, mode, rdev, ctx):
        uid, gid, mode = self._owner(parent, ctx, mode)
        return self._ref(self.fs.mknod(parent, name, mode, uid, gid, rdev))

    @handler
    def mkdir(self, parent, name, mode, ctx):
        uid, gid, mode = self._owner(parent, ctx, stat.S_IFDIR | mode)
        return self._ref(self.fs.mkdir(parent, name, mode, uid, gid))

    @handler
    def symlink(self, parent, name, target, ctx):
        uid, gid, _mode = self._owner(parent, ctx, stat.S_IFLNK)
        return self._ref(self.fs.symlink(parent, name, target, uid, gid))

    @handler
    def readlink(self, inode, ctx):
        return self.fs.readlink(inode)

    @handler
    def link(self, inode, new_parent, new_name, ctx):
        return self._ref(self.fs.link(inode, new_parent, new_name))

    @handler
    def unlink(self, parent, name, ctx):
        self.fs.unlink(parent, name)

    @handler
    def rmdir(self, parent, name, ctx):
        self.fs.rmdir(parent, name)

    @handler
    def rename(self, parent_old, name_old, parent_new, name_new, flags, ctx):
        uid, gid, _mode = self._owner(parent_old, ctx, stat.S_IFCHR)
        self.fs.rename(parent_old, name_old, parent_new, name_new, flags, owner=(uid, gid))

    # ---- directories ------------------------------------------------------------------------------
    @handler
    def opendir(self, inode, ctx):
        # The kernel sends OPENDIR for directories only.  It would take ENOSYS as "no
        # OPENDIR/RELEASEDIR from now on", but then READDIR carries fh 0, and pyfuse3's
        # readdir(fh, ...) is never told the inode: so every listing pays these two.
        return inode

    @handler
    def readdir(self, fh, start_id, token):
        """readdirplus: every entry with its attributes ("." and ".." add no lookup)."""
        fs = self.fs
        if start_id < COOKIE_DOT:
            if not pyfuse3.readdir_reply(token, b".", self._attr(fs.getattr(fh)), COOKIE_DOT):
                return
        if start_id < COOKIE_DOTDOT:
            parent = fs.getattr(fs.parent_of(fh))
            if not pyfuse3.readdir_reply(token, b"..", self._attr(parent), COOKIE_DOTDOT):
                return
        entries = fs.readdir(fh, max(start_id - COOKIE_BASE, 0))
        sent = 0
        try:
            for name, ino, cookie in entries:
                ind = fs.getattr(ino)
                if not pyfuse3.readdir_reply(token, name, self._attr(ind), min(cookie + COOKIE_BASE, COOKIE_MAX)):
                    return
                self._count(ino)
                sent += 1
        except Exception:
            if not sent:
                raise
            # Entries already sent carry lookup counts: deliver them; the next call starts
            # after them and reports the error.
            log.debug("readdir(%d) stops early", fh, exc_info=True)
        finally:
            entries.close()

    @handler
    def releasedir(self, fh):
        pass

    @handler
    def fsyncdir(self, fh, datasync):
        if self.honor_fsync and self.has_changes():
            self.commit()

    # ---- files --------------------------------------------------------------------------------------
    def _file_info(self, ino):
        return pyfuse3.FileInfo(fh=ino, keep_cache=True)

    @handler
    def open(self, inode, flags, ctx):
        ind = self.fs.getattr(inode)
        if ind.is_dir:
            raise FUSEError(errno.EISDIR)
        if flags & os.O_ACCMODE != os.O_RDONLY and not self.fs.writable:
            raise FUSEError(errno.EROFS)
        if flags & os.O_TRUNC:
            # the times stay: the kernel stamps them itself (writeback cache, as for write)
            # and sends them by SETATTR only when they differ from the ones it holds, so a
            # stamp here from the daemon's clock, which can lag the kernel's, would be kept
            kw = {"size": 0, "mtime_ns": ind.mtime_ns, "ctime_ns": ind.ctime_ns}
            if ctx.uid != 0:
                self._kill_priv(inode, kw)
            ind = self.fs.setattr(inode, **kw)
        self.fs.open(inode)
        if ctx.uid != 0 and ind.mode & (stat.S_ISUID | stat.S_ISGID):
            self.privileged.add(inode)
        return self._file_info(inode)

    @handler
    def create(self, parent, name, mode, flags, ctx):
        uid, gid, mode = self._owner(parent, ctx, mode)
        ind = self.fs.mknod(parent, name, stat.S_IFREG | stat.S_IMODE(mode), uid, gid)
        self.fs.open(ind.ino)
        return self._file_info(ind.ino), self._ref(ind)

    @handler
    def read(self, fh, off, size):
        return self.fs.read(fh, off, size)

    @handler
    def write(self, fh, off, buf):
        n = self.fs.write(fh, off, buf, stamp=False)      # the kernel keeps the times

        if fh in self.privileged:       # opened by a user with set-ID bits: a write drops them
            self.privileged.discard(fh)
            kw = {}
            self._kill_priv(fh, kw)
            if kw:
                self.fs.setattr(fh, **kw)
                self.invalidate.attrs(self.kernel_ino(fh))
        return n

    @handler
    def flush(self, fh):
        # ENOSYS once and the kernel sends no FLUSH again: close() has already written the
        # dirty pages, and data reaches the device with the next commit (see fsync).
        raise FUSEError(errno.ENOSYS)

    @handler
    def release(self, fh):
        self.fs.release(fh)

    @handler
    def fsync(self, fh, datasync):
        # fsync=ignore (default): durability comes with the periodic commit and umount.
        # fsync=honor: a commit (a whole checkpoint: ctrfs has no per-file journal).
        if self.honor_fsync and self.has_changes():
            self.commit()

    # ---- xattrs -------------------------------------------------------------------------------------
    @handler
    def getxattr(self, inode, name, ctx):
        if inode == C.ROOT_INO and name == COMMIT_XATTR:
            raise FUSEError(errno.ENODATA)
        if name != CAPABILITY_XATTR:
            return self.fs.getxattr(inode, name)
        if inode in self.no_caps:
            raise FUSEError(errno.ENODATA)
        try:
            return self.fs.getxattr(inode, name)
        except FsError as exc:
            if exc.errno == errno.ENODATA:
                if len(self.no_caps) >= NO_CAPS_MAX:
                    self.no_caps.clear()
                self.no_caps.add(inode)
            raise

    @handler
    def setxattr(self, inode, name, value, ctx):
        if inode == C.ROOT_INO and name == COMMIT_XATTR:
            self._commit_image(bytes(value))
        else:
            kill_sgid = name == ACL_ACCESS and not self._in_group(inode, ctx)
            self.no_caps.discard(inode)
            self.fs.setxattr(inode, name, value, kill_sgid=kill_sgid)

    def _commit_image(self, name):
        """`ctrfs commit MNT NAME[:TAG]`: the live tree becomes image NAME[:TAG]; the mount
        goes on over it.  EINVAL for a bad name, EEXIST if it is taken, EROFS read-only."""
        if not self.fs.writable:
            raise FUSEError(errno.EROFS)
        try:
            name = catalogue.new_key(self.engine, name)
        except catalogue.ImageExistsError:
            raise FUSEError(errno.EEXIST) from None
        except UsageError:            # not NAME[:TAG], or an @ name of ctrfs's own
            raise FUSEError(errno.EINVAL) from None
        self.commit(image=name)
        log.info("committed image %s", catalogue.shown(name))

    @handler
    def listxattr(self, inode, ctx):
        return self.fs.listxattr(inode)

    @handler
    def removexattr(self, inode, name, ctx):
        self.no_caps.discard(inode)
        self.fs.removexattr(inode, name)
