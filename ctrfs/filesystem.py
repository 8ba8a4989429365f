"""The POSIX file system over one FS tree (no FUSE here): namespace, attributes, xattrs,
data.  Every failure is an FsError carrying the errno a local file system would give."""
import errno
import stat
import weakref

from . import acl
from .errors import FsError, NoSpaceError
from .files import DirtyBudget, FileData
from .format import constants as C
from .format.items import dirent_key, fs_key, pack_dirent, unpack_dirent
from .inodes import Inode, InodeTable, now_ns, orphan_key
from .totals import tree_totals
from .format.node import max_item

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4     # leave a whiteout (char device 0:0) behind: overlayfs over ctrfs
XATTR_CREATE = 1
XATTR_REPLACE = 2
XATTR_PREFIXES = (b"user.", b"trusted.", b"security.")
XATTR_SYSTEM = acl.NAMES
DOTDOT = b".."
WRITE_PIECE = 1 << 20       # a write is admitted to the dirty cache this much at a time


def init_tree(tree):
    """Give an empty FS tree its root directory."""
    now = now_ns()
    InodeTable(tree).put(Inode(C.ROOT_INO, stat.S_IFDIR | 0o755, nlink=2, atime_ns=now, mtime_ns=now, ctime_ns=now))
    tree.put(dirent_key(C.ROOT_INO, DOTDOT), pack_dirent(C.ROOT_INO, stat.S_IFDIR >> 12))


def check_name(name):
    """A name to create; "." and ".." exist already (EEXIST, as Linux's mkdir says)."""
    if len(name) > C.NAME_MAX:
        raise FsError(errno.ENAMETOOLONG)
    if not name:
        raise FsError(errno.ENOENT)
    if name in (b".", DOTDOT):
        raise FsError(errno.EEXIST)
    if b"/" in name or b"\0" in name:
        raise FsError(errno.EINVAL)


class FileSystem:
    def __init__(self, engine, name, *, writable=True, dirty_limit=64 << 20, budget=None):
        """budget: a DirtyBudget shared with other trees (a daemon's); else one of dirty_limit."""
        self.engine = engine
        self.name = name
        self.tree = engine.tree(name)
        # an image is immutable: only a writable tree's commit ever stores changes
        self.writable = (writable and not engine.readonly
                         and engine.snapshot(name)["kind"] == C.SNAP_WRITABLE)
        self.inodes = InodeTable(self.tree)
        self.data = FileData(self.tree, engine.store, engine.block_size, budget or DirtyBudget(dirty_limit))
        self.open_count = {}          # ino -> open handles (an unlinked open file lives on)
        self._room = (0, None)        # (dirty bytes surely storable, log state) for _make_room
        engine.flushers.append(weakref.WeakMethod(self.data.flush))   # see Engine.commit
        if self.writable:
            for ino in self.inodes.orphans():
                self.inodes.free(ino)

    # ---- helpers -------------------------------------------------------------------
    def _w(self):
        if not self.writable:
            raise FsError(errno.EROFS)

    def _dir(self, ino):
        ind = self.inodes.get(ino)
        if not ind.is_dir:
            raise FsError(errno.ENOTDIR)
        return ind

    def _live_dir(self, ino):
        """A directory to add a name to: not one removed while still open (Linux: ENOENT)."""
        ind = self._dir(ino)
        if ind.nlink == 0:
            raise FsError(errno.ENOENT)
        return ind

    def _entry(self, parent, name):
        raw = self.tree.get(dirent_key(parent, name))
        return unpack_dirent(raw) if raw is not None else None

    def _add_entry(self, parent, name, ino, mode):
        self.tree.put(dirent_key(parent, name), pack_dirent(ino, stat.S_IFMT(mode) >> 12))

    def _maybe_flush(self):
        if self.data.over_limit():
            self._reclaim()
            for data in self.data.budget.fullest():   # of every tree sharing the budget
                data.flush()
                if not self.data.budget.over():
                    break

    def _make_room(self, n):
        """ENOSPC before a write is accepted, not at the commit after it: dirty blocks stay
        below half of what the log can still take (the rest is for tree nodes), so every
        acknowledged write can be flushed.  The bound is kept until the log takes data or
        a commit happens."""
        need = self.data.dirty_bytes + n + 2 * self.engine.block_size
        if need <= self._room[0] and self._room[1] == self._log_state():
            return
        self._room = (self._free_bytes() // 2, self._log_state())
        if need <= self._room[0]:
            return
        self._reclaim()
        self.data.flush()
        self._room = (self._free_bytes() // 2, self._log_state())
        if n + 2 * self.engine.block_size > self._room[0]:
            raise NoSpaceError("no space left on the device")

    def _log_state(self):
        return self.engine.seq, self.engine.store.stats["data_written"]

    def _free_bytes(self):
        log = self.engine.log
        segs = log.free_count() - log.reserve - log.commit_reserve()
        return max(segs, 0) * (log.seg_blocks - 1) * self.engine.block_size

    def _reclaim(self, rounds=3):
        """engine.reclaim(), but with this tree's dirty blocks mapped before each commit it
        makes: a checkpoint must not hold inodes whose new blocks are still in memory (after
        a crash an uninlined file would read as zeros, its committed bytes lost)."""
        engine = self.engine
        for _ in range(rounds):
            if engine.log.free_count() >= engine.clean_threshold():
                return
            try:
                self.data.flush()
            except NoSpaceError:
                pass                  # the commit's cleaning may make room for the rest
            engine.commit()

    # ---- lookups and attributes ---------------------------------------------------------
    def lookup(self, parent, name):
        if len(name) > C.NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)
        self._dir(parent)
        if name == b".":
            return parent
        e = self._entry(parent, name)
        if e is None:
            raise FsError(errno.ENOENT)
        return e[0]

    def getattr(self, ino):
        return self.inodes.get(ino)

    def setattr(self, ino, *, mode=None, uid=None, gid=None, size=None, atime_ns=None, mtime_ns=None, ctime_ns=None):
        self._w()
        ind = self.inodes.get(ino)
        if size is not None:
            if ind.is_dir:
                raise FsError(errno.EISDIR)
            if not ind.is_reg:
                raise FsError(errno.EINVAL)
            self.data.truncate(ind, size)
            ind.touch(m=True)
        if mode is not None:
            ind.mode = stat.S_IFMT(ind.mode) | stat.S_IMODE(mode)
            self._chmod_acl(ind)
        if uid is not None:
            ind.uid = uid
        if gid is not None:
            ind.gid = gid
        if atime_ns is not None:
            ind.atime_ns = atime_ns
        if mtime_ns is not None:
            ind.mtime_ns = mtime_ns
        ind.ctime_ns = ctime_ns if ctime_ns is not None else now_ns()
        self.inodes.put(ind)
        return ind

    # ---- creating ----------------------------------------------------------------------------
    def _create(self, parent, name, mode, uid, gid, rdev=0):
        self._w()
        check_name(name)
        pdir = self._live_dir(parent)
        if self._entry(parent, name) is not None:
            raise FsError(errno.EEXIST)
        inherited = self._inherit_acl(parent, mode)
        mode = inherited[0]
        now = now_ns()
        ind = Inode(self.inodes.allocate(), mode, uid, gid, 1, rdev, 0, now, now, now)
        for xname, entries in zip(acl.NAMES, inherited[1:]):
            if entries is not None:
                self.tree.put(fs_key(ind.ino, C.ITEM_XATTR, xname), acl.encode(entries))
        if stat.S_ISDIR(mode):
            ind.nlink = 2
            pdir.nlink += 1
            self.tree.put(dirent_key(ind.ino, DOTDOT), pack_dirent(parent, stat.S_IFDIR >> 12))
        elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            ind.flags = C.INODE_INLINE
        self._add_entry(parent, name, ind.ino, mode)
        pdir.touch(m=True, now=now)
        self.inodes.put(pdir)
        return ind

    def mknod(self, parent, name, mode, uid=0, gid=0, rdev=0):
        if stat.S_IFMT(mode) == 0:
            mode |= stat.S_IFREG
        if stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
            raise FsError(errno.EINVAL)
        ind = self._create(parent, name, mode, uid, gid, rdev)
        self.inodes.put(ind)
        return ind

    def mkdir(self, parent, name, mode, uid=0, gid=0):
        ind = self._create(parent, name, stat.S_IFDIR | stat.S_IMODE(mode), uid, gid)
        self.inodes.put(ind)
        return ind

    def symlink(self, parent, name, target, uid=0, gid=0):
        if not target or len(target) >= 4096:
            raise FsError(errno.ENAMETOOLONG if target else errno.ENOENT)
        ind = self._create(parent, name, stat.S_IFLNK | 0o777, uid, gid)
        self.data.write(ind, 0, target)
        self.inodes.put(ind)
        return ind

    def readlink(self, ino):
        ind = self.inodes.get(ino)
        if not stat.S_ISLNK(ind.mode):
            raise FsError(errno.EINVAL)
        return bytes(self.data.read(ind, 0, ind.size))

    def link(self, ino, parent, name):
        self._w()
        check_name(name)
        ind = self.inodes.get(ino)
        pdir = self._live_dir(parent)
        if self._entry(parent, name) is not None:   # Linux looks up the new name first
            raise FsError(errno.EEXIST)
        if ind.is_dir:
            raise FsError(errno.EPERM)
        ind.nlink += 1
        ind.touch()
        self.inodes.put(ind)
        self.tree.delete(orphan_key(ino))
        self._add_entry(parent, name, ino, ind.mode)
        pdir.touch(m=True)
        self.inodes.put(pdir)
        return ind

    # ---- removing ---------------------------------------------------------------------------------
    def _drop_link(self, ind):
        ind.nlink -= 1 if not ind.is_dir else ind.nlink
        ind.touch()
        if ind.nlink > 0:
            self.inodes.put(ind)
        elif self.open_count.get(ind.ino):
            self.inodes.put(ind)
            self.tree.put(orphan_key(ind.ino), b"")
        else:
            self._free(ind.ino)

    def _free(self, ino):
        self.data.forget(ino)
        self.inodes.free(ino)

    def _is_empty_dir(self, ino):
        lo, hi = fs_key(ino, C.ITEM_DIRENT), fs_key(ino, C.ITEM_DIRENT + 1)
        return all(k[17:] == DOTDOT for k, _v in self.tree.scan(lo, hi))

    def unlink(self, parent, name):
        self._w()
        ino = self.lookup(parent, name)
        ind = self.inodes.get(ino)
        if ind.is_dir:
            raise FsError(errno.EISDIR)
        self.tree.delete(dirent_key(parent, name))
        self._touch_dir(parent)
        self._drop_link(ind)

    def rmdir(self, parent, name):
        self._w()
        if name == b".":
            raise FsError(errno.EINVAL)
        if name == DOTDOT:
            raise FsError(errno.ENOTEMPTY)
        ino = self.lookup(parent, name)
        ind = self.inodes.get(ino)
        if not ind.is_dir:
            raise FsError(errno.ENOTDIR)
        if not self._is_empty_dir(ino):
            raise FsError(errno.ENOTEMPTY)
        self.tree.delete(dirent_key(parent, name))
        self._touch_dir(parent, nlink=-1)
        self._drop_link(ind)

    def _touch_dir(self, ino, nlink=0):
        d = self.inodes.get(ino)
        d.nlink += nlink
        d.touch(m=True)
        self.inodes.put(d)

    # ---- rename ---------------------------------------------------------------------------------
    def _is_ancestor(self, anc, ino):
        """Whether directory anc is ino or one of its ancestors."""
        seen = 0
        while True:
            if ino == anc:
                return True
            if ino == C.ROOT_INO or seen > 100000:
                return False
            e = self._entry(ino, DOTDOT)
            if e is None:
                return False
            ino, seen = e[0], seen + 1

    def rename(self, p1, n1, p2, n2, flags=0, owner=(0, 0)):
        """renameat2(2).  owner: uid, gid of the whiteout RENAME_WHITEOUT leaves at p1/n1."""
        self._w()
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) or \
                (flags & RENAME_EXCHANGE and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT)):
            raise FsError(errno.EINVAL)
        if len(n1) > C.NAME_MAX or len(n2) > C.NAME_MAX:
            raise FsError(errno.ENAMETOOLONG)
        if n1 in (b".", DOTDOT):
            raise FsError(errno.EBUSY)
        if n2 in (b".", DOTDOT):
            raise FsError(errno.EEXIST if flags & RENAME_NOREPLACE else errno.EBUSY)
        check_name(n2)
        src = self.inodes.get(self.lookup(p1, n1))
        self._live_dir(p2)
        dst_e = self._entry(p2, n2)
        # The checks in the order Linux's renameat2 makes them.
        if flags & RENAME_NOREPLACE and dst_e is not None:
            raise FsError(errno.EEXIST)
        if flags & RENAME_EXCHANGE and dst_e is None:
            raise FsError(errno.ENOENT)
        dst = self.inodes.get(dst_e[0]) if dst_e is not None else None
        if src.is_dir and self._is_ancestor(src.ino, p2):
            raise FsError(errno.EINVAL)
        if dst is not None and dst.is_dir and self._is_ancestor(dst.ino, p1):
            raise FsError(errno.EINVAL if flags & RENAME_EXCHANGE else errno.ENOTEMPTY)
        if dst is not None and dst.ino == src.ino:
            return                      # two names of one inode: nothing to do
        if flags & RENAME_EXCHANGE:
            return self._exchange(p1, n1, src, p2, n2, dst)
        if dst is not None:
            if dst.is_dir:
                if not src.is_dir:
                    raise FsError(errno.EISDIR)
                if not self._is_empty_dir(dst.ino):
                    raise FsError(errno.ENOTEMPTY)
                self._touch_dir(p2, nlink=-1)
            elif src.is_dir:
                raise FsError(errno.ENOTDIR)
            self._drop_link(dst)
        self.tree.delete(dirent_key(p1, n1))
        self._add_entry(p2, n2, src.ino, src.mode)
        if src.is_dir and p1 != p2:
            self.tree.put(dirent_key(src.ino, DOTDOT), pack_dirent(p2, stat.S_IFDIR >> 12))
            self._touch_dir(p1, nlink=-1)
            self._touch_dir(p2, nlink=+1)
        else:
            self._touch_dir(p1)
            if p2 != p1:
                self._touch_dir(p2)
        src = self.inodes.get(src.ino)
        src.touch()
        self.inodes.put(src)
        if flags & RENAME_WHITEOUT:       # as ext4: mode 0, owned by the caller
            self.inodes.put(self._create(p1, n1, stat.S_IFCHR, *owner, rdev=0))

    def _exchange(self, p1, n1, a, p2, n2, b):
        self._add_entry(p1, n1, b.ino, b.mode)
        self._add_entry(p2, n2, a.ino, a.mode)
        if p1 != p2:
            for ind, new_parent, old_parent in ((a, p2, p1), (b, p1, p2)):
                if ind.is_dir:
                    self.tree.put(dirent_key(ind.ino, DOTDOT), pack_dirent(new_parent, stat.S_IFDIR >> 12))
                    self._touch_dir(old_parent, nlink=-1)
                    self._touch_dir(new_parent, nlink=+1)
        for p in {p1, p2}:
            self._touch_dir(p)

    # ---- directories -----------------------------------------------------------------------------
    def readdir(self, ino, cookie=0):
        """(name, ino, next cookie) from cookie on; cookies are name hashes, stable across changes."""
        self._dir(ino)
        lo = fs_key(ino, C.ITEM_DIRENT, cookie.to_bytes(8, "big"))
        for key, val in self.tree.scan(lo, fs_key(ino, C.ITEM_DIRENT + 1)):
            name = key[17:]
            if name == DOTDOT:
                continue
            yield name, unpack_dirent(val)[0], int.from_bytes(key[9:17], "big") + 1

    def parent_of(self, ino):
        e = self._entry(ino, DOTDOT)
        return e[0] if e else C.ROOT_INO

    # ---- data -------------------------------------------------------------------------------------------
    def open(self, ino):
        self.open_count[ino] = self.open_count.get(ino, 0) + 1

    def release(self, ino):
        n = self.open_count.get(ino, 0) - 1
        if n > 0:
            self.open_count[ino] = n
            return
        self.open_count.pop(ino, None)
        if self.writable and self.inodes.exists(ino) and self.inodes.get(ino).nlink == 0:
            self._free(ino)

    def _reg(self, ino):
        """A regular file's inode (devices, FIFOs and symlinks hold no file data here)."""
        ind = self.inodes.get(ino)
        if not ind.is_reg:
            raise FsError(errno.EISDIR if ind.is_dir else errno.EINVAL)
        return ind

    def read(self, ino, offset, size):
        return self.data.read(self._reg(ino), offset, size)

    def write(self, ino, offset, data, *, stamp=True):
        """Write in pieces, so a write larger than the room left in the dirty cache is
        taken as far as the device can hold it (a short write, as POSIX allows, before
        ENOSPC).  stamp=False leaves mtime and ctime alone: under FUSE's writeback cache
        the kernel keeps them and sends them by SETATTR (a WRITE arrives long after the
        write(2) the kernel stamped)."""
        self._w()
        ind = self._reg(ino)
        mv = memoryview(data)
        done = 0
        while done < len(mv) or not done:
            piece = mv[done:done + WRITE_PIECE]
            try:
                self._make_room(len(piece))
            except NoSpaceError:
                if done:
                    break
                raise
            self.data.write(ind, offset + done, piece)
            if stamp:
                ind.touch(m=True)
            self.inodes.put(ind)
            self._maybe_flush()
            done += len(piece)
            if not piece:
                break
        return done

    def write_hashed(self, ino, offset, data, hashes):
        """write() of a piece whose blocks' data_hash are known (FileData.put_blocks):
        when it starts on a block boundary at or past the end of the file, its blocks are
        stored at once; anything else takes the ordinary path."""
        ind = self._reg(ino)
        if (offset % self.engine.block_size or offset < ind.size or not data
                or ind.is_inline and (ind.size or offset + len(data) <= C.INLINE_MAX)):
            return self.write(ino, offset, data)
        self._w()
        self._make_room(len(data))
        self.data.put_blocks(ind, offset, data, hashes)
        # the room left shrinks by what was stored at most: no recount per piece
        self._room = (self._room[0] - len(data), self._log_state())
        self.inodes.put(ind)
        return len(data)

    # ---- xattrs ---------------------------------------------------------------------------------------------
    def _xattr_key(self, ino, name):
        if not name or len(name) > C.XATTR_NAME_MAX:
            raise FsError(errno.ERANGE)
        if not (name.startswith(XATTR_PREFIXES) or name in XATTR_SYSTEM):
            raise FsError(errno.EOPNOTSUPP)
        self.inodes.get(ino)
        return fs_key(ino, C.ITEM_XATTR, name)

    def getxattr(self, ino, name):
        val = self.tree.get(self._xattr_key(ino, name))
        if val is None:
            raise FsError(errno.ENODATA)
        return bytes(val)

    def setxattr(self, ino, name, value, flags=0, *, kill_sgid=False):
        self._w()
        key = self._xattr_key(ino, name)
        if len(value) > 65536:
            raise FsError(errno.E2BIG)
        if len(key) + len(value) + 4 > max_item(self.engine.block_size):
            raise FsError(errno.ENOSPC)
        exists = self.tree.get(key) is not None
        if flags & XATTR_CREATE and exists:
            raise FsError(errno.EEXIST)
        if flags & XATTR_REPLACE and not exists:
            raise FsError(errno.ENODATA)
        ind = self.inodes.get(ino)
        if name in acl.NAMES:
            self._set_acl(ind, key, name, value, kill_sgid)
        else:
            self.tree.put(key, bytes(value))
        ind.touch()
        self.inodes.put(ind)

    def listxattr(self, ino):
        self.inodes.get(ino)
        return [k[9:] for k, _v in self.tree.scan(fs_key(ino, C.ITEM_XATTR), fs_key(ino, C.ITEM_XATTR + 1))]

    def removexattr(self, ino, name):
        """Removing an ACL that is not there succeeds, as on ext4 (the mode stays as it is)."""
        self._w()
        if not self.tree.delete(self._xattr_key(ino, name)) and name not in acl.NAMES:
            raise FsError(errno.ENODATA)
        ind = self.inodes.get(ino)
        ind.touch()
        self.inodes.put(ind)

    # ---- POSIX ACLs (the rules are ctrfs.acl's) ------------------------------------------------
    def _acl(self, ino, name):
        raw = self.tree.get(fs_key(ino, C.ITEM_XATTR, name))
        return acl.parse(raw) if raw is not None else None

    def _set_acl(self, ind, key, name, value, kill_sgid):
        """An ACL xattr is interpreted, as ext4 does: the access ACL sets the mode's
        permission bits and is kept only when it says more than the mode; a default ACL
        only on a directory (EACCES, as the kernel says, elsewhere).  An empty value or
        one without entries removes the ACL, as the kernel has it."""
        if stat.S_ISLNK(ind.mode):
            raise FsError(errno.EOPNOTSUPP)
        entries = acl.parse(value)
        if not entries:
            self.tree.delete(key)
            return
        if name == acl.DEFAULT and not ind.is_dir:
            raise FsError(errno.EACCES)
        if name == acl.ACCESS:
            ind.mode = acl.mode_of(entries, ind.mode)
            if kill_sgid:                 # a caller outside the file's group (posix_acl_update_mode)
                ind.mode &= ~stat.S_ISGID
            if acl.is_minimal(entries):
                self.tree.delete(key)
                return
        self.tree.put(key, acl.encode(entries))

    def _chmod_acl(self, ind):
        """chmod rewrites a stored access ACL: its mask (group:: without one) is the group triple."""
        entries = None if stat.S_ISLNK(ind.mode) else self._acl(ind.ino, acl.ACCESS)
        if entries is not None:
            self.tree.put(fs_key(ind.ino, C.ITEM_XATTR, acl.ACCESS), acl.encode(acl.chmod(entries, ind.mode)))

    def _inherit_acl(self, parent, mode):
        """(mode, access ACL, default ACL) of a new inode in parent (see acl.inherit)."""
        default = None if stat.S_ISLNK(mode) else self._acl(parent, acl.DEFAULT)
        if default is None:
            return mode, None, None
        return acl.inherit(default, mode)

    # ---- commit -----------------------------------------------------------------------------------------------
    def flush(self):
        self._reclaim()
        self.data.flush()

    def commit(self, image=None):
        """Flush and checkpoint; image=NAME also keeps this state as an immutable image."""
        self._reclaim()               # room for the data first (its commits are consistent)
        self.data.flush()
        if image:
            self.engine.commit(snapshot=(self.name, image), totals=self.totals())
        else:
            self.engine.commit()

    def totals(self):
        """(sum of regular file sizes, inode count), by one scan of the tree."""
        return tree_totals(self.tree)

    def statfs(self):
        log = self.engine.log
        total = log.nsegs * log.seg_blocks
        free = int(len(log.reusable())) * log.seg_blocks
        return dict(block_size=self.engine.block_size, blocks=total, free=free)
