"""Inode items of one FS tree: read, write, allocate, free."""
import stat
import time
from dataclasses import dataclass, field

from .errors import FsError
from .format import constants as C
from .format.items import NAMESPACE_END, fs_key, inode_ranges, key_type, pack_inode, unpack_inode
import errno

SUPER_KEY = fs_key(0, C.ITEM_SUPER)
CLOCK_REALTIME_COARSE = 5      # <linux/time.h>; Python's time module does not name it


def now_ns():
    """The time stamped on inodes: the kernel's coarse clock, the one it stamps its own
    cached times with (current_time()).  With the writeback cache the kernel keeps a
    regular file's mtime and sends it back by SETATTR whenever it differs from the time it
    would stamp: a finer clock here would cost one SETATTR per written file."""
    return time.clock_gettime_ns(CLOCK_REALTIME_COARSE)


def orphan_key(ino):
    """Inodes unlinked while open: freed at the next mount if the daemon died first."""
    return fs_key(0, C.ITEM_SUPER, ino.to_bytes(8, "big"))


@dataclass
class Inode:
    ino: int
    mode: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    rdev: int = 0
    size: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    flags: int = 0
    generation: int = 0
    inline: bytes = field(default=b"", repr=False)

    @property
    def is_dir(self):
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self):
        return stat.S_ISREG(self.mode)

    @property
    def is_inline(self):
        return bool(self.flags & C.INODE_INLINE)

    def touch(self, *, m=False, c=True, a=False, now=None):
        now = now or now_ns()
        if m:
            self.mtime_ns = now
        if c:
            self.ctime_ns = now
        if a:
            self.atime_ns = now


class InodeTable:
    def __init__(self, tree):
        self.tree = tree
        self._live = None     # inode items in the tree: counted once when first asked, then kept

    def live(self):
        """Inodes in the tree (statfs's used inodes), without a scan after the first."""
        if self._live is None:
            self._live = sum(1 for key, _v in self.tree.scan(b"", NAMESPACE_END) if key_type(key) == C.ITEM_INODE)
        return self._live

    def get(self, ino):
        raw = self.tree.get(fs_key(ino, C.ITEM_INODE))
        if raw is None:
            raise FsError(errno.ENOENT)
        fields, inline = unpack_inode(raw)
        return Inode(ino, *fields, inline=inline)

    def exists(self, ino):
        return self.tree.get(fs_key(ino, C.ITEM_INODE)) is not None

    def put(self, ind):
        self.tree.put(fs_key(ind.ino, C.ITEM_INODE), pack_inode(
            ind.mode, ind.uid, ind.gid, ind.nlink, ind.rdev, ind.size, ind.atime_ns, ind.mtime_ns,
            ind.ctime_ns, ind.flags, ind.generation, ind.inline))

    def allocate(self):
        raw = self.tree.get(SUPER_KEY)
        nxt = int.from_bytes(raw[:8], "little") if raw else C.FIRST_INO
        self.tree.put(SUPER_KEY, (nxt + 1).to_bytes(8, "little") + bytes(8))
        if self._live is not None:
            self._live += 1   # its record is put next (FileSystem._create)
        return nxt

    def free(self, ino):
        """Delete every item of the inode (record, xattrs, dirents, block map)."""
        for key in [k for lo, hi in inode_ranges(ino) for k, _v in self.tree.scan(lo, hi)]:
            if self._live is not None and key_type(key) == C.ITEM_INODE:
                self._live -= 1
            self.tree.delete(key)
        self.tree.delete(orphan_key(ino))

    def orphans(self):
        lo = orphan_key(0)
        return [int.from_bytes(k[9:17], "big") for k, _v in self.tree.scan(lo, fs_key(1, 0)) if len(k) == 17]
