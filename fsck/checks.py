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
  records, malformed items; with verify_data, the blake3 of every data block."""
import logging

import numpy as np

from ..checkpoint import read_slots
from ..device import Device
from ..errors import CorruptError, CtrfsError, DeviceError, UnsupportedError, UsageError
from ..format import constants as C
from ..format.checkpoint import CHECKPOINT_SIZE
from ..format.checksum import data_hash
from ..format.items import unpack_ca, unpack_snap, unpack_usage
from ..format.node import value_has_pointer
from ..format.segment import decode_summary
from ..format.superblock import SUPERBLOCK_SIZE, decode_superblock
from ..segments import SegmentLog
from .namespace import ALL_KINDS, Namespace, parse_leaf, plan
from .walk import BadNode, NodeInfo, NodeReader, walk_tree

log = logging.getLogger("ctrfs.fsck")

KIND_NAMES = {C.BLOCK_DATA: "data", C.BLOCK_NODE: "node", C.BLOCK_SYSNODE: "system node"}
SYSTEM_TREES = ((C.TREE_SNAP, "snap_root", "snapshot table", "salvage"),
                (C.TREE_CA, "ca_root", "content-address index", "refcount"),
                (C.TREE_USAGE, "usage_root", "segment usage table", "usage"),
                (C.TREE_REMAP, "remap_root", "inode remap table", "salvage"))


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


def short(h):
    return h.hex()[:16]


class Checker:
    def __init__(self, dev, *, verify_data=False, progress=None, slot=None, sb=None):
        self.dev = dev
        self.verify_data = verify_data
        self.progress = progress or NullProgress()
        self.slot = slot              # check this checkpoint slot instead of the newest
        self.problems = []
        self.notes = []
        self.sb = sb
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
        self.refs = {}                # hash -> pointers found (+ snapshot roots)
        self.ref_kind = {}            # hash -> BLOCK_NODE / BLOCK_DATA, as the pointers say
        self.data_hints = {}          # data hash -> a paddr hint from one pointer
        self.stale_hints = 0
        self.plans = {}               # root hash -> namespace Planner
        self.undescribed = {}         # segno -> [paddr] of live blocks no summary describes
        self.misdescribed = []        # paddrs of live blocks with a wrong summary entry
        self.bad_data = set()         # hashes of data blocks whose content does not match
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
                      self.check_orphans, self.check_data):
            check()
        self.progress.close()
        return self

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
            return f"checkpoint {cp['seq']} in slot {slot}, where only {'odd' if slot else 'even'} ones belong"
        if cp["roots"]["seq"] != cp["seq"]:
            return f"checkpoint {cp['seq']}: root set is from commit {cp['roots']['seq']}"
        if cp["log_segment"] >= sb["segment_count"] or cp["log_offset"] > sb["segment_blocks"]:
            return f"checkpoint {cp['seq']}: log head {cp['log_segment']}:{cp['log_offset']} outside the device"
        return None

    def _classify_slot(self, i, exc, newest):
        raw = self.dev.read(C.CHECKPOINT_SLOTS[i])
        if not any(raw):
            if newest >= 2:
                self.problem("check_checkpoints", f"slot {i} is empty, but checkpoint {newest} is not the first",
                             "checkpoint")
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

    # ---- system trees ---------------------------------------------------------------------------
    def check_system_trees(self):
        log.info("Checking system trees")
        self.progress.pass_("system trees")
        roots = self.cp["roots"]
        for kind, field, name, repair in SYSTEM_TREES:
            ptr = (roots[field]["paddr"], roots[field]["hash"])
            self.bad_sys[kind] = 0
            if ptr[0] == 0:
                continue

            def problem(msg, name=name, repair=repair, kind=kind):
                self.bad_sys[kind] += 1
                self.problem("check_system_trees", f"{name}: {msg}", repair)

            def visit(p, info, first, kind=kind):
                self.progress.update()
                if isinstance(info, NodeInfo):
                    self.sysnodes.append((kind, info.paddr, p[1], info.level, bytes(info.keys[0])))

            for leaf in walk_tree(self.reader, kind, ptr, visit=visit, problem=problem)[0]:
                for key, val in zip(leaf.keys, leaf.vals):
                    try:
                        self._system_item(kind, bytes(key), bytes(val))
                    except (CorruptError, UsageError) as exc:
                        problem(f"item {bytes(key).hex()[:40]}: {exc}")
        self.note(f"{len(self.snapshots)} snapshots, {len(self.ca)} content-address entries, "
                  f"{len(self.sysnodes)} system tree nodes")

    def _system_item(self, kind, key, val):
        if kind == C.TREE_SNAP:
            if not key or len(key) > C.SNAP_NAME_MAX or b"\0" in key:
                raise CorruptError(f"bad snapshot name {key!r}")
            self.snapshots[key] = unpack_snap(val)
        elif kind == C.TREE_CA:
            if len(key) != C.HASH_SIZE:
                raise CorruptError(f"key of {len(key)} bytes")
            paddr, ref, bkind = unpack_ca(val)
            if bkind not in (C.BLOCK_DATA, C.BLOCK_NODE):
                raise CorruptError(f"block kind {bkind}")
            if not self.log.valid_paddr(paddr):
                raise CorruptError(f"block address {paddr} outside the segment area")
            self.ca[key] = [paddr, ref, bkind]
        elif kind == C.TREE_USAGE:
            segno = int.from_bytes(key, "big")
            if len(key) != 8 or segno >= self.log.nsegs:
                raise CorruptError(f"segment {segno} out of range")
            entry = unpack_usage(val)
            if entry[0] not in C.SEG_STATES:
                raise CorruptError(f"segment {segno}: state {entry[0]}")
            self.usage_table[segno] = entry
        elif len(key) != 16 or len(val) != 16:
            raise CorruptError("malformed remap entry")

    # ---- FS trees -------------------------------------------------------------------------------
    def roots(self):
        """root hash -> (root pointer, [snapshot names]) of the non-empty FS trees."""
        out = {}
        for name, e in sorted(self.snapshots.items()):
            if e["root"][0]:
                out.setdefault(e["root"][1], (e["root"], []))[1].append(name)
        return out

    def check_fs_trees(self):
        log.info("Checking FS trees")
        nodes = sum(1 for e in self.ca.values() if e[2] == C.BLOCK_NODE)
        self.progress.pass_("FS trees", nodes or None)
        for digest, (ptr, names) in self.roots().items():
            self._ref(digest, C.BLOCK_NODE, len(names))
        for name, e in sorted(self.snapshots.items()):
            if not e["root"][0]:
                self.tree_leaves.setdefault(e["root"][1], [])
        locate = lambda h: self.ca[h][0] if h in self.ca else None  # noqa: E731
        for digest, (ptr, names) in self.roots().items():
            label = "tree " + ", ".join(n.decode(errors="replace") for n in names)
            problem = lambda msg, label=label: self.problem("check_fs_trees", f"{label}: {msg}", "salvage")  # noqa: E731
            self.tree_leaves[digest], self.tree_bad[digest] = walk_tree(
                self.reader, C.TREE_FS, ptr, seen=self.fs_nodes, locate=locate, visit=self._fs_visit,
                problem=problem)
        bad = sum(1 for i in self.fs_nodes.values() if isinstance(i, BadNode))
        self.note(f"{len(self.fs_nodes)} distinct FS tree nodes, {bad} unreadable")

    def _ref(self, digest, kind, n=1):
        self.refs[digest] = self.refs.get(digest, 0) + n
        have = self.ref_kind.setdefault(digest, kind)
        if have != kind:
            self.problem("check_pointers", f"block {short(digest)} is pointed at both as "
                         f"{KIND_NAMES[have]} and as {KIND_NAMES[kind]}", "salvage")

    def _fs_visit(self, ptr, info, first):
        if not first:
            return
        self.progress.update()
        if isinstance(info, BadNode):
            return
        if info.level > 0:
            for paddr, digest in info.vals:
                self._ref(digest, C.BLOCK_NODE)
                self._hint(digest, paddr)
            return
        for key, val in zip(info.keys, info.vals):
            if value_has_pointer(C.TREE_FS, key) and len(val) == 40:
                digest = bytes(val[8:40])
                self._ref(digest, C.BLOCK_DATA)
                self._hint(digest, int.from_bytes(val[:8], "little"))

    def _hint(self, digest, paddr):
        e = self.ca.get(digest)
        if e is not None and e[0] != paddr:
            self.stale_hints += 1
        self.data_hints.setdefault(digest, paddr)

    # ---- pointers and reference counts ------------------------------------------------------------
    def check_pointers(self):
        log.info("Checking block pointers")
        for digest, kind in sorted(self.ref_kind.items()):
            e = self.ca.get(digest)
            what = f"{KIND_NAMES[kind]} block {short(digest)} ({self.refs[digest]} references)"
            if e is None:
                if self.bad_sys.get(C.TREE_CA):
                    repair = "refcount"   # the CA index is being rebuilt from what is found
                else:
                    repair = "refcount" if self.locate(digest, kind) is not None else "salvage"
                self.problem("check_pointers", f"{what} is not in the content-address index", repair)
                continue
            if e[2] != kind:
                self.problem("check_pointers", f"{what}: the index says it is {KIND_NAMES.get(e[2], e[2])}",
                             "refcount")
                continue
            info = self.fs_nodes.get(digest) if kind == C.BLOCK_NODE else None
            if isinstance(info, NodeInfo) and info.paddr != e[0]:
                self.problem("check_pointers", f"{what}: the index says block {e[0]}, the node is at block "
                             f"{info.paddr}", "refcount")
        if self.stale_hints:
            self.note(f"{self.stale_hints} pointers carry a stale block address hint (moved by the cleaner)")

    def locate(self, digest, kind):
        """Where a block with this hash is, when the CA index does not say: the pointer hint."""
        if kind == C.BLOCK_NODE:
            info = self.fs_nodes.get(digest)
            return info.paddr if isinstance(info, NodeInfo) else None
        paddr = self.data_hints.get(digest)
        try:
            if paddr is not None and data_hash(self.reader.read_block(paddr)) == digest:
                return paddr
        except CorruptError:
            pass
        return None

    def check_refcounts(self):
        log.info("Checking reference counts")
        incomplete = any(isinstance(i, BadNode) for i in self.fs_nodes.values())
        skipped = 0
        for digest, (paddr, ref, kind) in sorted(self.ca.items()):
            want = self.refs.get(digest, 0)
            if want == ref:
                continue
            if incomplete and want < ref:
                skipped += 1     # unreadable nodes may hold the missing references
                continue
            what = f"{KIND_NAMES[kind]} block {short(digest)} at {paddr}"
            if want == 0:
                self.problem("check_refcounts", f"{what}: refcount {ref}, but nothing references it (leaked)",
                             "refcount")
            else:
                self.problem("check_refcounts", f"{what}: refcount {ref}, found {want} references", "refcount")
        if skipped:
            self.note(f"{skipped} refcounts above the references found not reported (unreadable nodes)")

    # ---- segments ---------------------------------------------------------------------------------
    def expected_usage(self):
        """(live, pinned) per segment as the blocks found say."""
        lg = self.log
        live = np.zeros(lg.nsegs, dtype=np.int64)
        pinned = np.zeros(lg.nsegs, dtype=np.int64)
        for paddr, _r, _k in self.ca.values():
            live[lg.seg_of(paddr)] += 1
        for kind, paddr, *_ in self.sysnodes:
            (pinned if kind == C.TREE_USAGE else live)[lg.seg_of(paddr)] += 1
        return live, pinned

    def check_usage(self):
        log.info("Checking segment usage")
        lg, cp = self.log, self.cp
        live, pinned = self.expected_usage()
        table = self.usage_table
        state = np.array([table.get(s, (C.SEG_FREE,))[0] for s in range(lg.nsegs)], dtype=np.int64)
        for s in range(lg.nsegs):
            have = table[s][1] if s in table else 0
            if have != live[s]:
                self.problem("check_usage", f"segment {s}: usage table says {have} live blocks, found {live[s]}",
                             "usage")
            if (live[s] or pinned[s]) and state[s] == C.SEG_FREE:
                self.problem("check_usage", f"segment {s} is marked free but holds {live[s]} live blocks "
                             f"and {pinned[s]} usage-table nodes", "usage")
            elif state[s] == C.SEG_FULL and not live[s] and not pinned[s]:
                self.note(f"segment {s} is full but empty (freed by the next commit that touches it)")
        if state[cp["log_segment"]] != C.SEG_OPEN:
            self.problem("check_usage", f"log head segment {cp['log_segment']} is not marked open", "usage")
        others = [s for s in np.flatnonzero(state == C.SEG_OPEN) if s != cp["log_segment"]]
        if others:
            self.problem("check_usage", f"segments {others} are marked open, the log head is "
                         f"{cp['log_segment']}", "usage")
        total = sum(e[1] for e in table.values())
        if cp["live_blocks"] != total:
            self.problem("check_usage", f"checkpoint counts {cp['live_blocks']} live blocks, the usage table "
                         f"{total}", "usage")
        free = int((state == C.SEG_FREE).sum())
        if cp["free_segments"] != free:
            self.problem("check_usage", f"checkpoint counts {cp['free_segments']} free segments, the usage "
                         f"table {free}", "usage")
        if cp["snapshots"] != len(self.snapshots) and not self.bad_sys.get(C.TREE_SNAP):
            self.problem("check_usage", f"checkpoint counts {cp['snapshots']} snapshots, the table holds "
                         f"{len(self.snapshots)}", "checkpoint")

    def log_units(self, segno):
        """(first payload paddr, summary) of each committed log unit of one segment, and
        why the scan stopped early if a damaged summary stopped it."""
        lg, cp = self.log, self.cp
        start, off = lg.seg_start(segno), 0
        alloc = self.usage_table.get(segno, (0, 0, 0, 0))[2]
        end = cp["log_offset"] if segno == cp["log_segment"] else lg.seg_blocks
        units = []
        while off + 1 < end:
            raw = self.dev.read(start + off)
            try:
                unit = decode_summary(raw)
            except CorruptError as exc:
                if raw[:8] == C.SUMMARY_MAGIC:
                    return units, f"summary at block {start + off}: {exc}"
                return units, None
            if unit["unit_seq"] < alloc or unit["segment"] != segno or unit["unit_seq"] >= cp["next_unit_seq"]:
                return units, None     # stale: left over from an earlier use of the segment
            if off + 1 + len(unit["entries"]) > end:
                return units, f"summary at block {start + off}: {len(unit['entries'])} entries run past the end"
            units.append((start + off + 1, unit))
            off += 1 + len(unit["entries"])
        return units, None

    def expected_blocks(self):
        """paddr -> (kind, owner, hash) of every live block."""
        want = {}
        for digest, (paddr, _r, kind) in self.ca.items():
            want[paddr] = (kind, C.TREE_FS if kind == C.BLOCK_NODE else 0, digest)
        for kind, paddr, digest, _l, _k in self.sysnodes:
            want[paddr] = (C.BLOCK_SYSNODE, kind, digest)
        return want

    def check_summaries(self):
        log.info("Checking log unit summaries")
        lg = self.log
        want = self.expected_blocks()
        segs = sorted({lg.seg_of(p) for p in want} | {s for s, e in self.usage_table.items()
                                                       if e[0] != C.SEG_FREE})
        self.progress.pass_("summaries", len(segs))
        described = {}
        self.bad_units = {}
        self.misdescribed = []
        for s in segs:
            self.progress.update()
            units, why = self.log_units(s)
            for base, unit in units:
                for i, entry in enumerate(unit["entries"]):
                    described[base + i] = entry
            if why:
                self.bad_units[s] = why
        undescribed = {}
        for paddr, (kind, owner, digest) in sorted(want.items()):
            got = described.get(paddr)
            if got is None:
                undescribed.setdefault(lg.seg_of(paddr), []).append(paddr)
            elif got != (kind, owner, digest[:C.HASH_PREFIX_SIZE]):
                self.misdescribed.append(paddr)
                self.problem("check_summaries", f"block {paddr}: summary says {KIND_NAMES.get(got[0])} "
                             f"owner {got[1]} hash {got[2].hex()}, the block is {KIND_NAMES[kind]} owner {owner} "
                             f"hash {digest[:C.HASH_PREFIX_SIZE].hex()}", "summary")
        for s, paddrs in sorted(undescribed.items()):
            why = self.bad_units.get(s)
            self.problem("check_summaries", f"segment {s}: {len(paddrs)} live blocks (first {paddrs[0]}) not "
                         f"described by a log unit summary" + (f" ({why})" if why else ""), "summary")
        self.undescribed = undescribed

    # ---- namespaces -------------------------------------------------------------------------------
    def namespace_plans(self, allowed=ALL_KINDS):
        """root hash -> Planner of each distinct FS tree."""
        plans = {}
        for digest, leaves in self.tree_leaves.items():
            ns = Namespace()
            for leaf in leaves:
                facts = self._facts.get(id(leaf))
                if facts is None:
                    facts = self._facts[id(leaf)] = parse_leaf(leaf.keys, leaf.vals)
                ns.add(facts)
            names = [n for n, e in sorted(self.snapshots.items()) if e["root"][1] == digest]
            label = "tree " + ", ".join(n.decode(errors="replace") for n in names)
            plans[digest] = plan(ns, label, allowed, self.sb["block_size"])
        return plans

    def _namespace_problems(self, check):
        log.info("Checking %s", {"check_inodes": "inode items", "check_directories": "directories",
                                 "check_link_counts": "link counts", "check_orphans": "unreachable inodes "
                                 "and dangling entries"}[check])
        if not self.plans and self.tree_leaves:
            self.progress.pass_("namespaces", len(self.tree_leaves))
            self.plans = self.namespace_plans()
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

    # ---- data ----------------------------------------------------------------------------------------
    def check_data(self):
        if not self.verify_data:
            return
        log.info("Checking data blocks")
        data = sorted((e[0], h) for h, e in self.ca.items() if e[2] == C.BLOCK_DATA)
        self.progress.pass_("data", len(data))
        for paddr, digest in data:
            self.progress.update()
            try:
                got = data_hash(self.reader.read_block(paddr))
            except CorruptError as exc:
                self.bad_data.add(digest)
                self.problem("check_data", f"data block {short(digest)} at {paddr}: {exc}", "salvage")
                continue
            if got != digest:
                self.bad_data.add(digest)
                self.problem("check_data", f"data block {short(digest)} at {paddr}: content hashes to "
                             f"{short(got)}", "salvage")


# ---- the API other code uses ------------------------------------------------------------------------
class FsckResult:
    """problems: what the check found, [(check name, message)]; remaining: what is left
    after a repair (== problems without one); exit_code per fsck(8)."""

    def __init__(self, problems, remaining, exit_code, notes=(), fixed=False, checkpoint=None):
        self.problems = list(problems)
        self.remaining = list(remaining)
        self.exit_code = exit_code
        self.notes = list(notes)
        self.fixed = fixed
        self.checkpoint = checkpoint

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
    from .repair import repair_device   # repair imports this module

    own = isinstance(device, (str, bytes)) or hasattr(device, "__fspath__")
    dev = Device(device, readonly=repair == "n") if own else device
    try:
        checker = Checker(dev, verify_data=verify_data, progress=progress).run()
        problems = checker.problems
        if not problems:
            return FsckResult([], [], 0, checker.notes, checkpoint=checker.cp and checker.cp["seq"])
        if repair == "n" or dev.readonly:
            return FsckResult(problems, problems, 4, checker.notes, checkpoint=checker.cp and checker.cp["seq"])
        return repair_device(dev, checker, repair, verify_data=verify_data, progress=progress)
    finally:
        if own:
            dev.close()


__all__ = ["Checker", "CtrfsError", "FsckResult", "Problem", "check_device", "check_engine"]
