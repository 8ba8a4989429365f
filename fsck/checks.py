"""fsck.ctrfs checks: a Checker with one check_* method per structure, in dependency
order.  Each logs "Checking ..." and records problems (check name, message, the repair
kind that fixes it); nothing here prints or writes.

What is checked against what (spec/DESIGN.md has the why):
- superblock and its mirror decode and agree; both checkpoint slots (newest, torn, CRC);
- every node of every system tree and of every snapshot's FS tree (each distinct node
  once): CRC, blake3 against the pointer, kind, key order, levels, separator bounds;
- every pointer's hash is in the CA index with the right kind, and the index says where
  the node really is (a stale paddr hint in the pointer is fine);
- CA refcounts against the pointers found (+1 per pointer in each distinct stored FS
  node, +1 per snapshot holding a root); usage-table live counts against the blocks found
  (CA entries + system tree nodes; usage-table nodes are `pinned`); each live block's log
  unit summary entry;
- per FS tree: link counts, '..' entries, unreachable inodes, dangling entries, orphan
  records, malformed items; each image's recorded size and inode count; with verify_data, the blake3 of every data block."""
import logging
from collections import Counter

from ..checkpoint import read_slots
from ..device import Device
from ..errors import CorruptError, DeviceError, UnsupportedError
from ..format import constants as C
from ..format.checkpoint import CHECKPOINT_SIZE
from ..format.superblock import SUPERBLOCK_SIZE, decode_superblock
from ..segments import SegmentLog
from .namespace import ALL_KINDS, Namespace, parse_leaf, plan
from .space import SpaceChecks
from .totals import TotalsChecks
from .trees import TreeChecks
from .walk import NodeReader

log = logging.getLogger("ctrfs.fsck")


class Problem(tuple):
    """(check name, message), plus the repair kind that fixes it (None: nothing can)."""

    def __new__(cls, check, message, repair=None):
        self = super().__new__(cls, (check, message))
        self.repair = repair
        return self

    check = property(lambda self: self[0])
    message = property(lambda self: self[1])


class NullProgress:
    def pass_(self, name, total=None):
        pass

    def update(self, n=1):
        pass

    def close(self):
        pass


class Checker(TreeChecks, SpaceChecks, TotalsChecks):
    def __init__(self, dev, *, verify_data=False, progress=None, slot=None):
        self.dev = dev
        self.verify_data = verify_data
        self.progress = progress or NullProgress()
        self.slot = slot              # check this checkpoint slot instead of the newest
        self.problems = []
        self.notes = []
        self.sb = None
        self.cp = None
        self.cp_slot = None
        self.other_slots = []         # valid checkpoints not chosen, newest first
        self.log = None               # SegmentLog: geometry only, nothing is appended
        self.reader = None
        # What the walks found (the repair uses it too).
        self.snapshots = {}           # name -> snapshot entry
        self.ca = {}                  # hash -> [paddr, refcount, kind]
        self.usage_table = {}         # segno -> (state, live, alloc_seq, freed_seq)
        self.sysnodes = []            # (tree kind, paddr, hash, level, first key) of readable nodes
        self.bad_sys = {}             # tree kind -> number of unreadable nodes / bad items
        self.fs_nodes = {}            # hash -> NodeInfo | BadNode (distinct FS nodes)
        self.tree_leaves = {}         # root hash -> [NodeInfo] leaves in key order
        self.tree_bad = {}            # root hash -> structural problems met walking it
        self.refs = Counter()         # hash -> pointers found (+ snapshot roots)
        self.bulk_pointers = []       # (hashes, paddrs) of block-map leaves, counted at the end of the walk
        self.ref_kind = {}            # hash -> BLOCK_NODE / BLOCK_DATA, as the pointers say
        self.data_hints = {}          # data hash -> a paddr hint from one pointer
        self.stale_hints = 0
        self.plans = {}               # root hash -> namespace Planner
        self.undescribed = {}         # segno -> [paddr] of live blocks no summary describes
        self.misdescribed = []        # paddrs of live blocks with a wrong summary entry
        self.bad_data = set()         # hashes of data blocks whose content does not match
        self.clashes = set()          # hashes of live blocks that share an address
        self._facts = {}

    # ---- recording -------------------------------------------------------------------------
    def problem(self, check, message, repair=None):
        self.problems.append(Problem(check, message, repair))

    def note(self, message):
        self.notes.append(message)
        log.info("  %s", message)

    def run(self):
        """All checks, stopping early only when there is nothing left to check against."""
        self.check_superblocks()
        if self.sb is None:
            return self
        self.check_checkpoints()
        if self.cp is None:
            return self
        for check in (self.check_system_trees, self.check_fs_trees, self.check_pointers,
                      self.check_refcounts, self.check_usage, self.check_summaries,
                      self.check_inodes, self.check_directories, self.check_link_counts,
                      self.check_orphans, self.check_totals, self.check_data):
            check()
        self.progress.close()
        return self

    def stats(self):
        """What was checked, for the summary line."""
        lg = self.log
        data = sum(1 for e in self.ca.values() if e[2] == C.BLOCK_DATA)
        used = sum(1 for e in self.usage_table.values() if e[0] != C.SEG_FREE)
        return dict(trees=len(self.snapshots), inodes=sum(len(p.inodes) for p in self.plans.values()),
                    nodes=len(self.fs_nodes) + len(self.sysnodes), data_blocks=data,
                    segments_used=used, segments=lg.nsegs if lg else 0)

    @property
    def fatal(self):
        """Problems whose repair loses data (unreadable trees, missing blocks)."""
        return [p for p in self.problems if p.repair in ("salvage", None)]

    # ---- superblocks -------------------------------------------------------------------------
    def check_superblocks(self):
        log.info("Checking superblocks")
        self.progress.pass_("superblocks")
        dev = self.dev
        try:
            primary = decode_superblock(dev.read_at(0, SUPERBLOCK_SIZE))
        except UnsupportedError:
            raise
        except (CorruptError, DeviceError) as exc:
            primary = exc
        if isinstance(primary, dict):
            self.sb = primary
            self._check_mirror(primary)
        else:
            mirror = self._find_mirror()
            if mirror is None:
                head = dev.read_at(0, 8) if dev.size >= 8 else b""
                if head != C.SUPERBLOCK_MAGIC:
                    raise DeviceError(f"{dev.path}: not a ctrfs file system (no superblock found)")
                self.problem("check_superblocks", f"primary superblock: {primary}; no valid mirror")
                return
            self.problem("check_superblocks", f"primary superblock: {primary} (the mirror is intact)",
                         "superblock")
            self.sb = mirror
        sb = self.sb
        dev.block_size = sb["block_size"]
        if dev.size // sb["block_size"] < sb["device_blocks"]:
            raise DeviceError(f"{dev.path}: device is smaller than its file system "
                              f"({dev.size // sb['block_size']} < {sb['device_blocks']} blocks)")

    def _check_mirror(self, sb):
        where = sb["mirror_block"] * sb["block_size"]
        try:
            mirror = decode_superblock(self.dev.read_at(where, SUPERBLOCK_SIZE))
        except (CorruptError, DeviceError) as exc:
            self.problem("check_superblocks", f"mirror superblock at block {sb['mirror_block']}: {exc}",
                         "superblock")
            return
        differ = sorted(k for k in sb if mirror.get(k) != sb[k])
        if differ:
            self.problem("check_superblocks", "mirror superblock differs from the primary in "
                         + ", ".join(differ), "superblock")

    def _find_mirror(self):
        """The mirror sits in the last block; its block size is unknown, so try each."""
        bs, dev = C.MIN_BLOCK_SIZE, self.dev
        while bs <= C.MAX_BLOCK_SIZE and dev.size >= 2 * bs:
            try:
                sb = decode_superblock(dev.read_at((dev.size // bs - 1) * bs, SUPERBLOCK_SIZE))
                if sb["block_size"] == bs:
                    return sb
            except UnsupportedError:
                raise
            except (CorruptError, DeviceError):
                pass
            bs *= 2
        return None

    # ---- checkpoints ---------------------------------------------------------------------------
    def check_checkpoints(self):
        log.info("Checking checkpoints")
        sb, dev = self.sb, self.dev
        valid, broken = [], []
        for i, cp in read_slots(dev, sb):
            if not isinstance(cp, Exception):
                why = self._cp_sanity(i, cp)
                if why is None:
                    valid.append((cp["seq"], i, cp))
                    continue
                cp = CorruptError(why)
            broken.append((i, cp))
        valid.sort(key=lambda v: v[0], reverse=True)
        newest = valid[0][0] if valid else 0
        for i, exc in broken:
            self._classify_slot(i, exc, newest)
        if not valid:
            self.problem("check_checkpoints", "no valid checkpoint in either slot")
            return
        if len(valid) == 2 and valid[1][0] != newest - 1:
            self.problem("check_checkpoints", f"slots hold checkpoints {newest} and {valid[1][0]}, "
                         f"expected {newest} and {newest - 1}", "checkpoint")
        chosen = valid[0]
        if self.slot is not None:
            chosen = next((v for v in valid if v[1] == self.slot), None)
            if chosen is None:
                self.problem("check_checkpoints", f"slot {self.slot} holds no valid checkpoint")
                return
        self.cp_slot, self.cp = chosen[1], chosen[2]
        self.other_slots = [v[1] for v in valid if v is not chosen]
        log.info("  using checkpoint %d (slot %d)", self.cp["seq"], self.cp_slot)
        cp = self.cp
        self.log = SegmentLog(dev, sb, cp["log_segment"], cp["log_offset"], cp["next_unit_seq"])
        self.reader = NodeReader(dev, self.log, sb["block_size"])

    def _cp_sanity(self, slot, cp):
        sb = self.sb
        if cp["seq"] % 2 != slot:
            parity = "odd" if slot else "even"
            return f"checkpoint {cp['seq']} in slot {slot}, where only {parity} ones belong"
        if cp["roots"]["seq"] != cp["seq"]:
            return f"checkpoint {cp['seq']}: root set is from commit {cp['roots']['seq']}"
        if cp["log_segment"] >= sb["segment_count"] or cp["log_offset"] > sb["segment_blocks"]:
            return (f"checkpoint {cp['seq']}: log head {cp['log_segment']}:{cp['log_offset']} "
                    "outside the device")
        return None

    def _classify_slot(self, i, exc, newest):
        raw = self.dev.read(C.CHECKPOINT_SLOTS[i])
        if not any(raw):
            if newest >= 2:
                self.problem("check_checkpoints",
                             f"slot {i} is empty, but checkpoint {newest} is not the first", "checkpoint")
            else:
                self.note(f"slot {i} never written (new file system)")
            return
        # A commit interrupted while writing its slot leaves the slot after `newest` with
        # the new seq at one end and the overwritten one (newest - 1) at the other: that is
        # the normal state after a crash, not damage (the commit never happened).
        # (A slot never written counts as holding checkpoint 0.)
        if raw[:8] == C.CHECKPOINT_MAGIC:
            head = int.from_bytes(raw[8:16], "little")
        else:
            head = None if any(raw[:CHECKPOINT_SIZE]) else 0
        tail = int.from_bytes(raw[-8:], "little")
        if newest and i == (newest + 1) % 2 and {head, tail} == {newest + 1, newest - 1}:
            self.note(f"slot {i}: checkpoint {newest + 1} was torn by an interrupted commit ({exc}); "
                      f"checkpoint {newest} stands")
            return
        self.problem("check_checkpoints", f"slot {i}: {exc}", "checkpoint")

    # ---- namespaces -------------------------------------------------------------------------------
    def namespace_plans(self, allowed=ALL_KINDS):
        """root hash -> Planner of each distinct FS tree."""
        plans = {}
        for digest, leaves in self.tree_leaves.items():
            ns = Namespace()
            for leaf in leaves:
                facts = self._facts.get(id(leaf))
                if facts is None:
                    facts = self._facts[id(leaf)] = (parse_leaf(None, None, leaf.fixed) if leaf.fixed is not None
                                                     else parse_leaf(leaf.keys, leaf.vals))
                ns.add(facts)
            names = [n for n, e in sorted(self.snapshots.items()) if e["root"][1] == digest]
            label = "tree " + ", ".join(n.decode(errors="replace") for n in names)
            plans[digest] = plan(ns, label, allowed, self.sb["block_size"])
        return plans

    def ensure_plans(self):
        if not self.plans and self.tree_leaves:
            self.progress.pass_("namespaces", len(self.tree_leaves))
            self.plans = self.namespace_plans()

    def _namespace_problems(self, check):
        log.info("Checking %s", {"check_inodes": "inode items", "check_directories": "directories",
                                 "check_link_counts": "link counts", "check_orphans": "unreachable inodes "
                                 "and dangling entries"}[check])
        self.ensure_plans()
        for p in self.plans.values():
            for name, msg, kind in p.problems:
                if name == check:
                    self.problem(name, msg, kind)

    def check_inodes(self):
        self._namespace_problems("check_inodes")

    def check_directories(self):
        self._namespace_problems("check_directories")

    def check_link_counts(self):
        self._namespace_problems("check_link_counts")

    def check_orphans(self):
        self._namespace_problems("check_orphans")


# ---- the API other code uses ------------------------------------------------------------------------
class FsckResult:
    """problems: what the check found, [(check name, message)]; remaining: what is left
    after a repair (== problems without one); exit_code per fsck(8)."""

    def __init__(self, problems, remaining, exit_code, notes=(), fixed=False, checker=None):
        self.problems = list(problems)
        self.remaining = list(remaining)
        self.exit_code = exit_code
        self.notes = list(notes)
        self.fixed = fixed
        self.checkpoint = checker.cp["seq"] if checker is not None and checker.cp else None
        self.stats = checker.stats() if checker is not None and checker.cp else {}

    def __repr__(self):
        return f"FsckResult(exit_code={self.exit_code}, problems={self.problems!r})"


def check_engine(engine):
    """Problems of an open engine's last committed state ([] when clean): reads the
    device as it is, not the engine's caches."""
    checker = Checker(engine.dev, slot=engine.cp["seq"] % 2 if engine.cp["seq"] else None)
    return list(checker.run().problems)


def check_device(device, *, repair="n", verify_data=False, progress=None):
    """Check (and with repair="p" or "y", repair) a device given by path or as an open
    Device/MemoryDevice.  Returns an FsckResult."""
    if repair not in ("n", "p", "y"):
        raise ValueError(f"repair must be 'n', 'p' or 'y', not {repair!r}")
    own = isinstance(device, (str, bytes)) or hasattr(device, "__fspath__")
    dev = Device(device, readonly=repair == "n") if own else device
    try:
        checker = Checker(dev, verify_data=verify_data, progress=progress).run()
        problems = checker.problems
        if not problems:
            return FsckResult([], [], 0, checker.notes, checker=checker)
        if repair == "n" or dev.readonly:
            return FsckResult(problems, problems, 4, checker.notes, checker=checker)
        # Imported here, not at the top: repair imports this module, and a check that
        # finds nothing to repair (most runs) does not load the engine for it.
        from .repair import repair_device
        return repair_device(dev, checker, repair, verify_data=verify_data, progress=progress)
    finally:
        if own:
            dev.close()


__all__ = ["Checker", "FsckResult", "Problem", "check_device", "check_engine"]
