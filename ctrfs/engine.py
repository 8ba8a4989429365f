"""The engine: opens a device at its newest valid checkpoint, holds the system trees, and
commits atomically (everything new, flush, then the next checkpoint slot, flush)."""
import time
import weakref
from collections import Counter

import numpy as np

from .checkpoint import load_checkpoint, write_checkpoint
from .cleaner import clean
from .errors import CorruptError, DeviceError, NotCtrfsError, UnsupportedError, UsageError
from .format import constants as C
from .format.items import pack_snap, pack_usage, unpack_snap, unpack_usage, usage_key
from .format.pointer import NULL_POINTER
from .format.superblock import SUPERBLOCK_SIZE, decode_superblock
from .segments import SegmentLog
from .store import BlockStore, ContentIndex
from .totals import tree_totals
from .tree import Node, Tree


PENDING_ITEM_COST = 400     # bytes: a CA delta entry (~280) and a block-map tree item (~120)


class Engine:
    def __init__(self, dev, sb, cp, *, cache_bytes=64 << 20):
        self.dev = dev
        self.sb = sb
        self.block_size = sb["block_size"]
        self.readonly = dev.readonly
        self.cp = cp
        self.seq = cp["seq"]
        self.log = SegmentLog(dev, sb, cp["log_segment"], cp["log_offset"], cp["next_unit_seq"])
        self.log.commit_seq = self.seq + 1
        self.store = BlockStore(dev, self.log, self.block_size, cache_bytes)
        roots = cp["roots"]
        ptr = lambda p: (p["paddr"], p["hash"])  # noqa: E731
        self.ca_tree = Tree(self.store, C.TREE_CA, ptr(roots["ca_root"]))
        self.ca = ContentIndex(self.ca_tree)
        self.store.ca = weakref.proxy(self.ca)
        self.ca.load_log(self.store.read_raw, ptr(roots["calog_root"]), roots["calog_entries"])
        self.snaps = Tree(self.store, C.TREE_SNAP, ptr(roots["snap_root"]))
        self.usage = Tree(self.store, C.TREE_USAGE, ptr(roots["usage_root"]))
        self.remap = Tree(self.store, C.TREE_REMAP, ptr(roots["remap_root"]))
        self.open_trees = {}     # name -> Tree of writable trees in use
        self.pending_drops = []  # root hashes released by deleted snapshots
        self.failed = None       # the exception that broke a commit half way
        self.calog_limit = C.CALOG_LIMIT
        # weak references to the data flush of every FileSystem on this engine (a daemon's
        # views, an import's scratch tree): each one's dirty file data is mapped into its
        # tree before any commit, whichever of them asked for it, so no checkpoint holds an
        # inode whose blocks are still in memory
        self.flushers = []
        # weak references keep the engine free of reference cycles, so a dropped engine
        # (and its device buffer, in tests) is freed at once rather than by the GC
        reserve = weakref.WeakMethod(self._commit_reserve)
        self.log.commit_reserve = lambda: reserve()()
        self.clean_below = max(2 * C.RESERVED_SEGMENTS, self.log.nsegs // 8)
        self._load_usage()
        if not dev.readonly:
            # Units a crashed commit wrote past the checkpoint may survive in segments that
            # are reused now; numbering on from beyond any number they could carry keeps
            # them below every reused segment's alloc_unit_seq, so scans reject them.
            self.log.next_unit_seq += sb["device_blocks"]

    # ---- opening ----------------------------------------------------------------------
    @classmethod
    def open(cls, dev, *, slot=None, cache_bytes=64 << 20):
        """Open at the newest checkpoint that loads (or the given slot index)."""
        sb = read_superblock(dev)
        dev.block_size = sb["block_size"]
        unknown = sb["ro_compat"] & ~C.ALL_RO_COMPAT
        if unknown and not dev.readonly:
            raise UnsupportedError(f"unknown read-only-compatible features {unknown:#x}: open read-only")
        if dev.blocks < sb["device_blocks"]:
            raise DeviceError(f"{dev.path}: device is smaller than its file system "
                              f"({dev.blocks} < {sb['device_blocks']} blocks)")
        errors = []
        for cp in load_checkpoint(dev, sb, slot):
            try:
                return cls(dev, sb, cp, cache_bytes=cache_bytes)
            except CorruptError as exc:
                errors.append(f"checkpoint {cp['seq']}: {exc}")
        raise CorruptError("no usable checkpoint: " + ("; ".join(errors) or "both slots invalid"))

    def _load_usage(self):
        log = self.log
        for key, val in self.usage.scan():
            segno = int.from_bytes(key, "big")
            if segno >= log.nsegs:
                raise CorruptError(f"usage table: segment {segno} out of range")
            state, live, alloc, freed = unpack_usage(val)
            log.state[segno], log.live[segno] = state, live
            log.alloc_seq[segno], log.freed_seq[segno] = alloc, freed
        log.dirty.clear()
        self._recount_pinned()

    def _recount_pinned(self):
        """Usage-table nodes per segment, touching only the segments that held or hold
        one (a commit's cost must not grow with the number of segments)."""
        log = self.log
        new = Counter(log.seg_of(ptr[0]) for ptr, *_ in self.usage.walk_nodes())
        old = getattr(self, "_pinned_at", None)
        if old is None:
            old = {int(s): int(log.pinned[s]) for s in np.flatnonzero(log.pinned)}
        for s in old.keys() | new.keys():
            if old.get(s, 0) != new.get(s, 0):
                log.pinned[s] = new.get(s, 0)
                log.dirty.add(int(s))
        self._pinned_at = new

    # ---- snapshots and trees -------------------------------------------------------------
    def snapshots(self):
        """[(name, entry)] in name order."""
        return [(bytes(k), unpack_snap(v)) for k, v in self.snaps.scan()]

    def snapshot(self, name):
        raw = self.snaps.get(name)
        return unpack_snap(raw) if raw is not None else None

    def tree(self, name):
        """The FS tree of a snapshot; writable trees are tracked so commit flushes them."""
        if name in self.open_trees:
            return self.open_trees[name]
        e = self.snapshot(name)
        if e is None:
            raise UsageError(f"no image or tree named {name.decode(errors='replace')!r}")
        t = Tree(self.store, C.TREE_FS, e["root"])
        if e["kind"] == C.SNAP_WRITABLE:
            self.open_trees[name] = t
        return t

    def create_tree(self, name, root=None, kind=C.SNAP_WRITABLE, parent_name=b"", parent_root=None,
                    logical_bytes=0, inodes=0):
        """A new snapshot entry holding `root` (an FS tree pointer, or empty)."""
        check_key(name)
        if self.snaps.get(name) is not None:
            raise UsageError(f"an image or tree named {name.decode(errors='replace')!r} exists")
        root = root or NULL_POINTER
        if root[0]:
            self.ca.incref(root[1])
        self.snaps.put(name, pack_snap(kind, time.time_ns(), root, parent_root or bytes(32),
                                       logical_bytes, inodes, parent_name))

    def clone(self, src, dst, kind=C.SNAP_WRITABLE, figures=None):
        """dst shares every block of src (src must be committed: it is read from the table).
        An image records figures=(logical bytes, inodes), counted from its FS tree unless
        given."""
        e = self.snapshot(src)
        if e is None:
            raise UsageError(f"no image or tree named {src.decode(errors='replace')!r}")
        if src in self.open_trees and self.open_trees[src].is_dirty():
            raise UsageError("commit the tree before cloning it")
        if kind != C.SNAP_IMAGE:
            figures = (0, 0)      # an image records its figures; a writable tree none
        elif figures is None:
            figures = ((e["logical_bytes"], e["inodes"]) if e["kind"] == C.SNAP_IMAGE
                       else tree_totals(Tree(self.store, C.TREE_FS, e["root"])))
        self.create_tree(dst, e["root"], kind, parent_name=src, parent_root=e["root"][1],
                         logical_bytes=figures[0], inodes=figures[1])

    def delete(self, name):
        e = self.snapshot(name)
        if e is None:
            raise UsageError(f"no image or tree named {name.decode(errors='replace')!r}")
        if e["root"][0]:
            self.pending_drops.append(e["root"][1])
        self.snaps.delete(name)
        self.open_trees.pop(name, None)

    # ---- commit ------------------------------------------------------------------------------
    def pending_bytes(self):
        """Memory that changes waiting for the commit hold, roughly: each changed CA entry
        and the tree item beside it (a daemon commits early when it passes its budget)."""
        return len(self.ca.delta) * PENDING_ITEM_COST

    def commit_due(self, changes, writable=True):
        """Whether a periodic commit is due: with changes, and also while freed segments
        wait for the commits that return them (an idle mount would never get them back)."""
        return changes or (writable and not self.readonly and self.log.space_waiting())

    def commit(self, snapshot=None, totals=None):
        """Make everything durable in one checkpoint.  snapshot=(tree, image) also records
        the committed state of writable tree `tree` as immutable image `image`, with
        totals=(logical bytes, inodes) for the listing (counted here when not given)."""
        if self.readonly:
            raise UsageError("device is open read-only")
        if self.failed is not None:
            raise DeviceError(f"an earlier commit failed ({self.failed}); remount to continue "
                              "from the last checkpoint")
        for ref in list(self.flushers):
            flush = ref()
            if flush is None:
                self.flushers.remove(ref)
            else:
                flush()
        if snapshot is not None:
            check_key(snapshot[1])
            if self.snapshot(snapshot[1]) is not None:
                raise UsageError(f"an image named {snapshot[1].decode(errors='replace')!r} exists")
            if totals is None:
                totals = tree_totals(self.tree(snapshot[0]))
        try:
            self._commit(snapshot, totals)
        except BaseException as exc:
            # Memory may now be half way through a commit: refuse to go on from it.  The
            # device still holds the last checkpoint intact.
            self.failed = exc
            raise

    def _commit(self, snapshot, totals):
        seq = self.seq + 1
        self.log.commit_seq = seq
        if self.log.free_count() < self.clean_threshold():
            clean(self)
        drops = self.pending_drops
        self.pending_drops = []
        for name, tree in self.open_trees.items():
            old = self.snapshot(name)["root"]
            ptr = tree.flush(seq) or NULL_POINTER
            if ptr[1] == old[1]:
                continue
            if ptr[0]:
                self.ca.incref(ptr[1])
            if old[0]:
                drops.append(old[1])
            self._set_root(name, ptr)
        if snapshot is not None:
            # The image is a layer over the tree's previous parent; the tree goes on over it.
            src, dst = snapshot
            e = self.snapshot(src)
            self.create_tree(dst, e["root"], C.SNAP_IMAGE, parent_name=e["parent_name"],
                             parent_root=e["parent_root"], logical_bytes=totals[0], inodes=totals[1])
            self._set_root(src, e["root"], parent=dst)
        for h in drops:
            self.ca.decref(h)
        self.store.collect()
        self._write_system_trees(seq)
        self.log.drain()
        self.dev.flush()
        self.cp = write_checkpoint(self, seq)
        self.dev.flush()
        self.seq = seq
        self.log.commit_seq = seq + 1

    def _commit_reserve(self):
        """Segments the next commit may write besides data, so writers stop (ENOSPC)
        while a commit still fits: every changed CA entry may copy a CA leaf (a leaf
        holds ~70 entries, so at most live/70 of them) when the CA log is merged, or a
        CA log block per 84 changes, plus FS nodes and slack."""
        changed = len(self.ca.delta) + len(self.ca.logged)
        ca_leaves = int(self.log.live.sum()) // 70 + 1
        blocks = min(changed, ca_leaves) + changed // 40 + changed // 84 + 64
        return -(-blocks // (self.log.seg_blocks - 1))

    def clean_threshold(self):
        """Free segments below which commits clean: above the point where writers stop
        (reserve + commit reserve), or with small segments they hit ENOSPC on a device
        full of garbage before the cleaner ever runs."""
        return max(self.clean_below, self.log.reserve + self._commit_reserve() + 2)

    def reclaim(self, rounds=3):
        """Clean and commit until the writers have room again (a freed segment is
        reusable two commits later); NoSpaceError from the writer if this cannot help."""
        for _ in range(rounds):
            if self.log.free_count() >= self.clean_threshold():
                return
            self.commit()

    def _set_root(self, name, ptr, parent=None):
        e = self.snapshot(name)
        parent_root, parent_name = (e["parent_root"], e["parent_name"]) if parent is None else (ptr[1], parent)
        self.snaps.put(name, pack_snap(e["kind"], e["created_ns"], ptr, parent_root,
                                       e["logical_bytes"], e["inodes"], parent_name))

    def _write_system_trees(self, seq):
        log = self.log
        self.ca.commit(log, self.block_size, self.calog_limit)
        for tree in (self.ca_tree, self.snaps, self.remap):
            tree.flush(seq)
        for tree in (self.ca_tree, self.snaps, self.remap, self.usage):
            for paddr, _h in tree.replaced:
                if tree is not self.usage:
                    log.add_live(paddr, -1)
            tree.replaced.clear()
        log.count_pending()
        log.settle()
        # The usage table describes every segment but itself: it is written last, and all
        # in the head segment, so writing it changes no state it records.
        while True:
            for s in sorted(log.dirty):
                self.usage.put(usage_key(s), pack_usage(int(log.state[s]), int(log.live[s]),
                                                        int(log.alloc_seq[s]), int(log.freed_seq[s])))
            log.dirty.clear()
            if log.fits_in_head(count_dirty(self.usage.root)):
                break
            log.next_segment()
        self.usage.flush(seq)
        self.usage.replaced.clear()
        self._recount_pinned()

    def close(self):
        self.log.close()
        self.dev.close()


def count_dirty(root):
    if not isinstance(root, Node):
        return 0
    return 1 + sum(count_dirty(c) for c in root.vals) if root.level > 0 else 1


def check_key(name):
    """The snapshot table's own limits on a key; naming policy is ctrfs.catalogue's."""
    if not name or len(name) > C.SNAP_NAME_MAX or b"\0" in name or b"/" in name[:1]:
        raise UsageError(f"bad snapshot key {name!r}")


def read_superblock(dev):
    """The primary superblock, or the mirror in the device's last block when it is damaged
    (the mirror's block size is unknown, so each allowed size is tried)."""
    try:
        return decode_superblock(dev.read_at(0, SUPERBLOCK_SIZE))
    except UnsupportedError:
        raise            # intact but too new for us: the mirror says the same
    except CorruptError as primary:
        bs = C.MIN_BLOCK_SIZE
        while bs <= C.MAX_BLOCK_SIZE and dev.size >= 2 * bs:
            try:
                return decode_superblock(dev.read_at((dev.size // bs - 1) * bs, SUPERBLOCK_SIZE))
            except CorruptError:
                bs *= 2
        if dev.size < 8 or dev.read_at(0, 8) != C.SUPERBLOCK_MAGIC:
            raise NotCtrfsError(f"{dev.path}: not a ctrfs file system (no superblock found)")
        raise primary
