"""check_totals: each image's snapshot entry records its logical size and inode count
(ctrfs/totals.py; `ctrfs images` shows them).  fsck recounts both from the tree's inode
records and reports an entry that differs; the repair (kind "totals", safe for -p)
writes the figures of the tree as the repair leaves it, so an image whose tree lost
files or gained lost+found is right after the same commit.  Writable trees record none
(0): their content moves with every commit."""
import logging
import stat

from ..format import constants as C
from ..format.items import pack_snap
from .namespace import show

log = logging.getLogger("ctrfs.fsck")


def namespace_totals(inodes):
    """(logical bytes, inodes) of ino -> (fields, inline) records, as tree_totals counts."""
    size = 0
    for fields, _inline in inodes.values():
        if stat.S_ISREG(fields[0]):
            size += fields[5]
    return size, len(inodes)


class TotalsChecks:
    """Mixed into the Checker (needs snapshots, plans, tree_bad)."""

    def check_totals(self):
        log.info("Checking recorded image sizes and inode counts")
        self.ensure_plans()
        for name, e in sorted(self.snapshots.items()):
            if e["kind"] != C.SNAP_IMAGE:
                continue
            digest = e["root"][1]
            if self.tree_bad.get(digest):
                continue          # unreadable nodes: no recount (check_fs_trees reported them)
            p = self.plans.get(digest)
            have = namespace_totals(p.ns.inodes) if p is not None else (0, 0)
            rec = (e["logical_bytes"], e["inodes"])
            if rec != have:
                self.problem("check_totals", f"image {show(name)}: records {rec[0]} bytes in {rec[1]} "
                             f"inodes, its tree holds {have[0]} bytes in {have[1]} inodes", "totals")


def fix_totals(engine, checker, plans, allowed, skip=()):
    """Set every image entry's figures to its tree's after the repair (plans: the
    Planners the repair applied); skip: root hashes of trees this repair leaves alone.
    Returns whether an entry changed."""
    if "totals" not in allowed:
        return False
    changed = False
    for name, e in sorted(checker.snapshots.items()):
        digest = e["root"][1]
        if e["kind"] != C.SNAP_IMAGE or digest in skip:
            continue
        cur = engine.snapshot(name)
        if cur is None:
            continue
        p = plans.get(digest)
        want = namespace_totals(p.inodes) if p is not None else (0, 0)
        if (cur["logical_bytes"], cur["inodes"]) != want:
            engine.snaps.put(name, pack_snap(cur["kind"], cur["created_ns"], cur["root"], cur["parent_root"],
                                             want[0], want[1], cur["parent_name"]))
            changed = True
    return changed
