"""fsck.ctrfs repairs: turn a Checker's findings into one engine commit, then check again.

Order matters.  The superblocks are rewritten first (nothing else can be found without
them); a checkpoint whose trees lost data gives way to the older slot when that one
checks better; then, on an engine opened at the chosen checkpoint:
1. the usage table is set from the blocks found, before anything is appended (a segment
   wrongly marked free must not be handed to the log);
2. the content-address index is set to what the pointers say (refcounts, locations,
   leaks dropped; rebuilt wholesale when its own nodes are unreadable);
3. damaged system trees are rebuilt from their readable items;
4. live blocks no log unit summary describes are copied to the log head (the cleaner
   finds blocks only through summaries);
5. FS trees get their namespace edits (link counts, lost+found, dangling entries);
   trees with unreadable nodes are rebuilt from their readable leaves;
6. image entries get the size and inode count of their trees as repaired;
then one commit.  Another round of check-and-repair follows while repairable problems
remain (freeing what a rebuilt tree left behind needs a second commit)."""
import copy
import logging

from ..engine import Engine
from ..errors import CorruptError, CtrfsError
from ..format import constants as C
from ..format.checksum import data_hash
from ..format.items import block_end, block_index, block_key, item_range, key_ino, key_type, pack_snap
from ..format.node import value_has_pointer
from ..format.pointer import NULL_POINTER
from ..format.segment import decode_summary
from ..format.superblock import encode_superblock
from ..tree import Tree
from .checks import Checker, FsckResult, Problem
from .namespace import ALL_KINDS, SAFE_KINDS
from .totals import fix_totals
from .walk import BadNode, NodeInfo

log = logging.getLogger("ctrfs.fsck")
MAX_ROUNDS = 4


def repair_device(dev, checker, mode, *, verify_data=False, progress=None):
    """Repair what `mode` allows ("p": the safe kinds, "y": everything); FsckResult."""
    allowed = SAFE_KINDS if mode == "p" else ALL_KINDS
    found = list(checker.problems)
    notes = list(checker.notes)
    changed = False
    if checker.sb is not None and any(p.repair == "superblock" for p in found):
        write_superblocks(dev, checker.sb)
        changed = True
        checker = Checker(dev, verify_data=verify_data, progress=progress).run()
    fell_back = False
    if checker.cp is not None:
        checker, fell_back = choose_checkpoint(dev, checker, allowed, verify_data, notes)
    for _round in range(MAX_ROUNDS):
        todo = [p for p in checker.problems if p.repair in allowed]
        if checker.cp is None or not (todo or fell_back):
            break
        log.info("Repairing %d problems at checkpoint %d", len(todo), checker.cp["seq"])
        try:
            committed = Repair(dev, checker, allowed).run(force=fell_back)
        except CtrfsError as exc:     # e.g. no room left for the commit: the device is unchanged
            checker.problems.append(Problem("repair", f"repair failed: {exc}"))
            break
        fell_back = False      # the commit made the older checkpoint the newest
        if not committed:
            break              # what is left needs a repair this mode does not make
        changed = True
        before = set(checker.problems)
        checker = Checker(dev, verify_data=verify_data, progress=progress).run()
        if set(checker.problems) == before:
            break
    remaining = list(checker.problems)
    code = (1 if changed else 0) | (4 if remaining else 0)
    return FsckResult(found, remaining, code, notes + checker.notes, fixed=changed, checker=checker)


def write_superblocks(dev, sb):
    """The good superblock (primary or mirror) into block 0 and the last block."""
    raw = encode_superblock(sb).ljust(sb["block_size"], b"\0")
    dev.write(C.SUPERBLOCK_BLOCK, [raw])
    dev.write(sb["mirror_block"], [raw])
    dev.flush()


def choose_checkpoint(dev, checker, allowed, verify_data, notes):
    """The newest checkpoint, unless it lost data and the older slot did not."""
    if "checkpoint" not in allowed or not checker.fatal or not checker.other_slots:
        return checker, False
    older = Checker(dev, verify_data=verify_data, slot=checker.other_slots[0]).run()
    if older.cp is None or len(older.fatal) >= len(checker.fatal):
        return checker, False
    msg = (f"falling back from checkpoint {checker.cp['seq']} ({len(checker.fatal)} unrecoverable problems) "
           f"to checkpoint {older.cp['seq']} ({len(older.fatal)}); the last commit is lost")
    log.info("  %s", msg)
    notes.append(msg)
    return older, True


def open_engine(dev, checker):
    """An engine at the checker's checkpoint; an unreadable usage table is left out
    (it is rebuilt from the blocks found)."""
    try:
        return Engine(dev, checker.sb, checker.cp), False
    except CorruptError as exc:
        log.info("  usage table or CA log unusable (%s): rebuilding them", exc)
        cp = copy.deepcopy(checker.cp)
        cp["roots"]["usage_root"] = dict(paddr=0, hash=bytes(32))
        if checker.bad_sys.get(C.OWNER_CALOG):     # the CA index is rebuilt from what fsck found
            cp["roots"]["calog_root"] = dict(paddr=0, hash=bytes(32))
            cp["roots"]["calog_entries"] = 0
        engine = Engine(dev, checker.sb, cp)
        engine.cp = checker.cp
        return engine, True


class Repair:
    def __init__(self, dev, checker, allowed):
        self.dev = dev
        self.ck = checker
        self.allowed = allowed
        self.kinds = {p.repair for p in checker.problems}

    def run(self, force=False):
        """Make the repairs and commit them; False when there was nothing to commit."""
        ck = self.ck
        engine, usage_lost = open_engine(self.dev, ck)
        self.engine = engine
        engine.clean_below = 0          # no cleaner on a damaged device: repairs only
        engine.ca.force_merge = True    # a repaired device has an empty CA log
        if ck.bad_sys.get(C.OWNER_CALOG) and "refcount" not in self.allowed:
            engine.log.close()
            return False                # the CA log is lost: only a refcount repair rebuilds the index
        self.log = engine.log
        opened_dirty = set(self.log.dirty)    # the engine marks pinned-count changes at open
        try:
            self.fix_usage(rebuild=usage_lost or bool(ck.bad_sys.get(C.TREE_USAGE))
                           or self.usage_undescribed())
            self.new_ca = self.target_index()
            self.rebuild_system_trees()
            self.relocate_undescribed()
            self.fix_index()
            self.fix_fs_trees()
            totals = fix_totals(engine, ck, self.plans, self.allowed, self.untouched)
            # A bad checkpoint slot or checkpoint counters are put right by any commit.
            force = force or bool(self.kinds & {"checkpoint", "usage"} & self.allowed)
            changed = (self.log.dirty - opened_dirty or engine.ca.delta or engine.open_trees
                       or self.moved or self.rebuilt or engine.ca.chain or totals)
            if not (force or changed):
                return False
            if "usage" in self.allowed:
                live, pinned = ck.expected_usage()
                for s in ((self.log.state == C.SEG_FULL) & (live == 0) & (pinned == 0)).nonzero()[0]:
                    self.log.dirty.add(int(s))     # empty but never freed: this commit frees it
            engine.commit()
            return True
        finally:
            engine.log.close()

    # ---- 1. usage ----------------------------------------------------------------------------
    def fix_usage(self, rebuild):
        """live := blocks found; segments holding any are in use, the log head is open."""
        lg, ck = self.log, self.ck
        if rebuild and "usage" in self.allowed:
            self.engine.usage = Tree(self.engine.store, C.TREE_USAGE, None)
            lg.state[:] = C.SEG_FREE
            lg.alloc_seq[:] = 0
            lg.freed_seq[:] = 0
            lg.dirty.update(range(lg.nsegs))
        elif "usage" not in self.allowed:
            return
        live, pinned = ck.expected_usage()
        head = ck.cp["log_segment"]
        for s in range(lg.nsegs):
            used = bool(live[s] or pinned[s]) or s == head
            state = C.SEG_OPEN if s == head else (C.SEG_FULL if used else int(lg.state[s]))
            if state == C.SEG_OPEN and s != head:
                state = C.SEG_FULL
            if lg.live[s] != live[s] or lg.state[s] != state:
                lg.live[s] = live[s]
                if lg.state[s] == C.SEG_FREE and state != C.SEG_FREE:
                    lg.freed_seq[s] = 0
                    if not lg.alloc_seq[s]:
                        lg.alloc_seq[s] = self.first_unit_seq(s)
                lg.state[s] = state
                lg.dirty.add(s)

    def first_unit_seq(self, segno):
        try:
            return decode_summary(self.dev.read(self.log.seg_start(segno)))["unit_seq"]
        except CorruptError:
            return 0

    # ---- 2. the content-address index -----------------------------------------------------------
    def target_index(self):
        """hash -> [paddr, refcount, kind] as the references found say."""
        ck = self.ck
        if "refcount" not in self.allowed:
            return {h: list(e) for h, e in ck.ca.items()}
        new = {}
        for digest, refs in ck.refs.items():
            kind = ck.ref_kind[digest]
            old = ck.ca.get(digest)
            paddr = None
            if kind == C.BLOCK_NODE:
                info = ck.fs_nodes.get(digest)
                if isinstance(info, NodeInfo):
                    paddr = info.paddr
                elif old is not None:
                    paddr = old[0]      # unreadable: kept for now, dropped with its tree
            elif (old is not None and old[2] == kind and digest not in ck.bad_data
                  and (digest not in ck.clashes or self.holds(old[0], digest))):
                paddr = old[0]
            else:
                paddr = ck.locate(digest, kind)
            if paddr is not None:
                new[digest] = [paddr, refs, kind]
        if "salvage" not in self.allowed and any(isinstance(i, BadNode) for i in ck.fs_nodes.values()):
            # Unreadable nodes may hold references nobody can count: lower no refcount and
            # free nothing until -y rebuilds their trees.
            for digest, old in ck.ca.items():
                e = new.setdefault(digest, list(old))
                e[1] = max(e[1], old[1])
        return new

    def holds(self, paddr, digest):
        """Whether the data block at paddr has this content address."""
        try:
            return data_hash(self.dev.read(paddr)) == digest
        except CtrfsError:
            return False

    def fix_index(self):
        """Write the differences into the CA delta, moving live counts along."""
        ck, lg, ca = self.ck, self.log, self.engine.ca
        if "refcount" not in self.allowed:
            return
        if ck.bad_sys.get(C.TREE_CA) or ck.bad_sys.get(C.OWNER_CALOG):
            tree = Tree(self.engine.store, C.TREE_CA, None)
            self.engine.ca_tree = ca.tree = tree
            ca.logged.clear()
            ca.chain.clear()      # the blocks are let go here, not by the merge
            for kind, paddr, *_ in ck.sysnodes:
                if kind in (C.TREE_CA, C.OWNER_CALOG):
                    lg.add_live(paddr, -1)
            old_all = ck.ca
            ca.delta.clear()
            for digest, old in old_all.items():
                lg.add_live(old[0], -1)
            for digest, e in self.new_ca.items():
                ca.delta[digest] = list(e)
                if digest not in self.moved:
                    lg.add_live(e[0], 1)
            return
        for digest in set(ck.ca) | set(self.new_ca):
            old, new = ck.ca.get(digest), self.new_ca.get(digest)
            if old == new:
                continue
            ca.delta[digest] = list(new) if new is not None else None
            self.engine.store.forget_node(digest)
            if old is not None and (new is None or new[0] != old[0]):
                lg.add_live(old[0], -1)
            if new is not None and (old is None or new[0] != old[0]) and digest not in self.moved:
                lg.add_live(new[0], 1)

    # ---- 3. system trees -----------------------------------------------------------------------------
    def rebuild_system_trees(self):
        ck, engine = self.ck, self.engine
        self.rebuilt = False
        if ck.bad_sys.get(C.TREE_SNAP) and "salvage" in self.allowed:
            self.rebuilt = True
            tree = Tree(engine.store, C.TREE_SNAP, None)
            items = sorted((name, self.snap_value(name)) for name in ck.snapshots)
            if items:
                tree.bulk_load(items)
            self.drop_old_nodes(C.TREE_SNAP)
            engine.snaps = tree
        if ck.bad_sys.get(C.TREE_REMAP) and "salvage" in self.allowed:
            self.rebuilt = True
            self.drop_old_nodes(C.TREE_REMAP)
            engine.remap = Tree(engine.store, C.TREE_REMAP, None)

    def snap_value(self, name):
        e = self.ck.snapshots[name]
        return pack_snap(e["kind"], e["created_ns"], e["root"], e["parent_root"], e["logical_bytes"],
                         e["inodes"], e["parent_name"])

    def drop_old_nodes(self, kind):
        for k, paddr, *_ in self.ck.sysnodes:
            if k == kind:
                self.log.add_live(paddr, -1)

    # ---- 4. summaries ----------------------------------------------------------------------------------
    def misdescribed(self):
        """paddrs of live blocks whose summary entry is missing or wrong."""
        if "summary" not in self.allowed:
            return set()
        return {p for paddrs in self.ck.undescribed.values() for p in paddrs} | set(self.ck.misdescribed)

    def usage_undescribed(self):
        bad = self.misdescribed()
        return any(kind == C.TREE_USAGE and paddr in bad for kind, paddr, *_ in self.ck.sysnodes)

    def relocate_undescribed(self):
        """Copy live blocks that no summary describes (or describes wrongly) to the log
        head; system tree nodes are rewritten by touching their path."""
        self.moved = set()
        ck = self.ck
        bad = self.misdescribed()
        if not bad:
            return
        by_paddr = {e[0]: (h, e) for h, e in self.new_ca.items()}
        sys_nodes = {paddr: (kind, level, key) for kind, paddr, _h, level, key in ck.sysnodes}
        engine, lg = self.engine, self.log
        trees = {C.TREE_CA: engine.ca_tree, C.TREE_SNAP: engine.snaps, C.TREE_REMAP: engine.remap}
        for paddr in sorted(bad):
            if paddr in by_paddr:
                digest, e = by_paddr[paddr]
                raw = self.dev.read(paddr)
                owner = C.TREE_FS if e[2] == C.BLOCK_NODE else 0
                e[0] = lg.append(e[2], owner, digest, raw, reserve_ok=True)
                self.moved.add(digest)      # fix_index moves the live count off the old block
            elif paddr in sys_nodes:
                kind, level, key = sys_nodes[paddr]
                rebuilding = kind == C.TREE_CA and ck.bad_sys.get(C.TREE_CA)
                if kind in trees and trees[kind].root is not None and not rebuilding:
                    trees[kind].touch(key, level)     # rewritten at the commit
                    self.rebuilt = True

    # ---- 5. FS trees --------------------------------------------------------------------------------------
    def fix_fs_trees(self):
        ck, engine = self.ck, self.engine
        self.plans = plans = ck.namespace_plans(self.allowed)
        self.untouched = set()   # trees left as they are, unreadable parts and all
        for digest, (ptr, names) in ck.roots(empty=True).items():
            plan = plans.get(digest)
            lost = self.lost_data(digest)
            salvage = bool(ck.tree_bad.get(digest) or lost)
            edits = plan is not None and (plan.edits or plan.drop_inos or plan.trims)
            if salvage and "salvage" not in self.allowed:
                self.untouched.add(digest)
                continue     # its nodes cannot all be rewritten; -y rebuilds it
            if not salvage and not edits:
                continue
            for name in names:
                if name not in ck.snapshots or engine.snapshot(name) is None:
                    continue
                if salvage:
                    tree = self.rebuilt_tree(digest, lost, plan)
                    engine._set_root(name, NULL_POINTER)   # the old tree is freed as a leak next round
                else:
                    tree = Tree(engine.store, C.TREE_FS, ptr)
                    apply_edits(tree, plan)
                engine.open_trees[name] = tree

    def lost_data(self, digest):
        """Block-map keys of this tree whose data block cannot be found."""
        lost = set()
        for leaf in self.ck.tree_leaves.get(digest, ()):
            for key, val in zip(leaf.keys, leaf.vals):
                if value_has_pointer(C.TREE_FS, key) and bytes(val[8:40]) not in self.new_ca:
                    lost.add(bytes(key))
        return lost

    def rebuilt_tree(self, digest, lost, plan):
        items = {}
        for leaf in self.ck.tree_leaves.get(digest, ()):
            for key, val in zip(leaf.keys, leaf.vals):
                key = bytes(key)
                if key not in lost and key not in items:
                    items[key] = bytes(val)
        if plan is not None:
            for key, val in plan.edits.items():
                if val is None:
                    items.pop(key, None)
                else:
                    items[key] = val
            drop = set(plan.drop_inos)
            trims = dict(plan.trims)
            for key in list(items):
                ino, item = key_ino(key), key_type(key)
                if ino in drop and item in (C.ITEM_XATTR, C.ITEM_BLOCK):
                    del items[key]
                elif item == C.ITEM_BLOCK and ino in trims and block_index(key) >= trims[ino]:
                    del items[key]
        tree = Tree(self.engine.store, C.TREE_FS, None)
        tree.bulk_load(sorted(items.items()))
        return tree


def apply_edits(tree, plan):
    for key, val in sorted(plan.edits.items()):
        if val is None:
            tree.delete(key)
        else:
            tree.put(key, val)
    for ino in plan.drop_inos:
        for item in (C.ITEM_XATTR, C.ITEM_BLOCK):
            for key in [k for k, _v in tree.scan(*item_range(ino, item))]:
                tree.delete(key)
    for ino, first in plan.trims:
        for key in [k for k, _v in tree.scan(block_key(ino, first), block_end(ino))]:
            tree.delete(key)


__all__ = ["repair_device", "write_superblocks"]
