"""floorfs: the floor under ctrfs's FUSE costs.  A pyfuse3 file system on the same loop
(asyncio on uvloop) and with the same kernel settings as a writable ctrfs mount (writeback
cache, 1 h entry/attribute timeouts, FLUSH answered ENOSYS, readdirplus, POSIX ACLs,
default_permissions), whose handlers only answer: attributes, names, xattrs and symlink
targets live in dicts, file data is dropped (reads give zeros).  A workload on it costs
what the kernel and the loop cost for that workload's request mix; ctrfs / floor is then
what ctrfs's own work adds.

    python3 bench/floorfs.py MOUNTPOINT      # foreground; umount MOUNTPOINT ends it

CTRFS_REQUEST_COUNTS=FILE writes the request counts as JSON at exit, as ctrfs does.
"""
import collections
import errno
import json
import os
import stat
import sys
import time

import pyfuse3
import pyfuse3.asyncio
import uvloop
from pyfuse3 import FUSEError

TIMEOUT = 3600.0
ROOT = pyfuse3.ROOT_INODE
COUNTS = collections.Counter()


def counted(fn):
    name = fn.__name__

    async def wrapper(self, *args):
        COUNTS[name] += 1
        return fn(self, *args)
    wrapper.__name__ = name
    return wrapper


class Floor(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = True
    enable_acl = True

    def __init__(self):
        super().__init__()
        self.attrs = {}          # ino -> EntryAttributes
        self.entries = {}        # dir ino -> {name: ino}
        self.parent = {}         # dir ino -> parent ino
        self.xattrs = collections.defaultdict(dict)
        self.targets = {}        # symlink ino -> target
        self.next_ino = ROOT + 1
        self._new(stat.S_IFDIR | 0o755, 0, 0, ino=ROOT)
        self.entries[ROOT], self.parent[ROOT] = {}, ROOT

    def _new(self, mode, uid, gid, rdev=0, ino=None):
        if ino is None:
            ino, self.next_ino = self.next_ino, self.next_ino + 1
        a = pyfuse3.EntryAttributes()
        a.st_ino = ino
        a.entry_timeout = a.attr_timeout = TIMEOUT
        a.st_mode, a.st_uid, a.st_gid, a.st_rdev = mode, uid, gid, rdev
        a.st_nlink = 2 if stat.S_ISDIR(mode) else 1
        a.st_blksize = 4096
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = time.clock_gettime_ns(5)  # REALTIME_COARSE
        self.attrs[ino] = a
        return a

    def _add(self, parent, name, mode, ctx, rdev=0):
        if name in self.entries[parent]:
            raise FUSEError(errno.EEXIST)
        a = self._new(mode, ctx.uid, ctx.gid, rdev)
        self.entries[parent][name] = a.st_ino
        if stat.S_ISDIR(mode):
            self.entries[a.st_ino], self.parent[a.st_ino] = {}, parent
        return a

    @counted
    def lookup(self, parent, name, ctx):
        if name == b".":
            return self.attrs[parent]
        if name == b"..":
            return self.attrs[self.parent[parent]]
        ino = self.entries[parent].get(name)
        if ino is None:
            neg = pyfuse3.EntryAttributes()
            neg.st_ino, neg.entry_timeout = 0, TIMEOUT
            return neg
        return self.attrs[ino]

    @counted
    def getattr(self, inode, ctx):
        return self.attrs[inode]

    @counted
    def setattr(self, inode, attr, fields, fh, ctx):
        a = self.attrs[inode]
        for field in ("size", "mode", "uid", "gid", "atime_ns", "mtime_ns", "ctime_ns"):
            if getattr(fields, "update_" + field.replace("_ns", "")):
                setattr(a, "st_" + field, getattr(attr, "st_" + field))
        return a

    @counted
    def mknod(self, parent, name, mode, rdev, ctx):
        return self._add(parent, name, mode, ctx, rdev)

    @counted
    def mkdir(self, parent, name, mode, ctx):
        return self._add(parent, name, stat.S_IFDIR | mode, ctx)

    @counted
    def symlink(self, parent, name, target, ctx):
        a = self._add(parent, name, stat.S_IFLNK | 0o777, ctx)
        self.targets[a.st_ino] = target
        a.st_size = len(target)
        return a

    @counted
    def readlink(self, inode, ctx):
        return self.targets[inode]

    @counted
    def link(self, inode, new_parent, new_name, ctx):
        self.entries[new_parent][new_name] = inode
        self.attrs[inode].st_nlink += 1
        return self.attrs[inode]

    @counted
    def unlink(self, parent, name, ctx):
        ino = self.entries[parent].pop(name)
        self.attrs[ino].st_nlink -= 1

    @counted
    def rmdir(self, parent, name, ctx):
        self.entries[parent].pop(name)

    @counted
    def rename(self, parent_old, name_old, parent_new, name_new, flags, ctx):
        self.entries[parent_new][name_new] = self.entries[parent_old].pop(name_old)

    @counted
    def opendir(self, inode, ctx):
        return inode

    @counted
    def readdir(self, fh, start_id, token):
        names = sorted(self.entries[fh].items())
        for i, (name, ino) in enumerate(names[start_id:], start_id + 1):
            if not pyfuse3.readdir_reply(token, name, self.attrs[ino], i):
                return

    @counted
    def releasedir(self, fh):
        pass

    @counted
    def open(self, inode, flags, ctx):
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    @counted
    def create(self, parent, name, mode, flags, ctx):
        a = self._add(parent, name, stat.S_IFREG | stat.S_IMODE(mode), ctx)
        return pyfuse3.FileInfo(fh=a.st_ino, keep_cache=True), a

    @counted
    def read(self, fh, off, size):
        return bytes(max(0, min(size, self.attrs[fh].st_size - off)))

    @counted
    def write(self, fh, off, buf):
        a = self.attrs[fh]
        a.st_size = max(a.st_size, off + len(buf))
        return len(buf)

    @counted
    def flush(self, fh):
        raise FUSEError(errno.ENOSYS)

    @counted
    def release(self, fh):
        pass

    @counted
    def fsync(self, fh, datasync):
        pass

    @counted
    def getxattr(self, inode, name, ctx):
        try:
            return self.xattrs[inode][name]
        except KeyError:
            raise FUSEError(errno.ENODATA) from None

    @counted
    def setxattr(self, inode, name, value, ctx):
        self.xattrs[inode][name] = bytes(value)

    @counted
    def listxattr(self, inode, ctx):
        return list(self.xattrs[inode])

    @counted
    def removexattr(self, inode, name, ctx):
        if self.xattrs[inode].pop(name, None) is None:
            raise FUSEError(errno.ENODATA)

    @counted
    def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_blocks = s.f_bfree = s.f_bavail = 1 << 20
        s.f_files = s.f_ffree = s.f_favail = 1 << 20
        s.f_namemax = 255
        return s

    async def forget(self, inode_list):
        COUNTS["forget"] += 1


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: floorfs.py MOUNTPOINT")
    pyfuse3.asyncio.enable()
    opts = {"fsname=floorfs", "subtype=floorfs", "default_permissions", "allow_other", "suid", "dev"}
    pyfuse3.init(Floor(), argv[0], opts)
    try:
        uvloop.run(pyfuse3.main())
    finally:
        pyfuse3.close(unmount=True)
        path = os.environ.get("CTRFS_REQUEST_COUNTS")
        if path:
            with open(path, "w") as f:
                json.dump(dict(COUNTS.most_common()), f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
