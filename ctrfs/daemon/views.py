"""A served tree (a view): its FileSystem and fs.Operations on the daemon's engine, the
slot that numbers its inodes for the kernel, and where it is bind-mounted."""
import errno
import logging

import pyfuse3

from .. import fs as fsops
from ..errors import FsError
from ..filesystem import FileSystem
from . import kino

log = logging.getLogger("ctrfs.daemon")


class ViewOperations(fsops.Operations):
    """fs.Operations of one tree whose replies carry kernel inode numbers (slot | ino).
    Requests arrive with on-disk numbers: the mux strips the slot."""

    def __init__(self, fs, slot, **kw):
        super().__init__(fs, **kw)
        self.slot = slot
        self.base = kino.join(slot, 0)

    def kernel_ino(self, ino):
        return self.base | ino

    def _attr(self, ind):
        if ind.ino > kino.INO_MASK:
            raise FsError(errno.EOVERFLOW)
        a = super()._attr(ind)
        a.st_ino = self.base | ind.ino
        return a


class View:
    """One tree served to the kernel as directory SLOT of the session root."""

    def __init__(self, engine, name, slot, *, writable, budget, fsync, commit_interval):
        self.name = name
        self.slot = slot
        self.fs = FileSystem(engine, name, writable=writable, budget=budget)
        self.ops = ViewOperations(self.fs, slot, fsync=fsync, commit_interval=commit_interval)
        self.targets = set()        # bind mount points (in the daemon's mount namespace)
        self.bound = False          # a bind was reported: from then on the mount table decides
        self.missing = set()        # targets the last look at the mount table did not find
        self.handles = 0            # open files and directories (a lazily detached view lives on)
        self.waiters = []           # asyncio events of clients waiting for the view's end
        self.code = None            # the final commit's status, once ended

    @property
    def shown(self):
        return self.name.decode(errors="replace")

    def root_attr(self):
        return self.ops._ref(self.fs.getattr(pyfuse3.ROOT_INODE))

    def has_changes(self):
        return self.ops.has_changes()

    def end(self):
        """Drop what the kernel held (frees unlinked open files), commit the tree, stop
        tracking it.  Returns 0, or 32 when the commit failed (the device keeps its last
        checkpoint)."""
        engine = self.fs.engine
        code = 0
        try:
            if self.fs.writable:
                for ino in list(self.fs.open_count):
                    self.fs.open_count[ino] = 1
                    self.fs.release(ino)
                self.ops.commit()
        except Exception:
            log.exception("final commit of %s failed: the device keeps its last checkpoint", self.shown)
            code = 32
        finally:
            self.ops.invalidate.stop()
            if not self.has_changes():
                engine.open_trees.pop(self.name, None)
            self.ops.lookups.clear()
        self.code = code
        return code
