"""fsck checks of the space: the segment usage table against the blocks found (CA
entries and system tree nodes live, usage-table nodes pinned), and the log unit summary
entry of every live block.  A mixin of `checks.Checker`."""
import logging

import numpy as np

from ..errors import CorruptError
from ..format import constants as C
from ..format.segment import decode_summary
from .trees import KIND_NAMES

log = logging.getLogger("ctrfs.fsck")


class SpaceChecks:
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
                self.problem("check_usage",
                             f"segment {s}: usage table says {have} live blocks, found {live[s]}", "usage")
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
            seq = unit["unit_seq"]
            if seq < alloc or unit["segment"] != segno or seq >= cp["next_unit_seq"]:
                return units, None     # stale: left over from an earlier use of the segment
            if off + 1 + len(unit["entries"]) > end:
                n = len(unit["entries"])
                return units, f"summary at block {start + off}: {n} entries run past the end"
            units.append((start + off + 1, unit))
            off += 1 + len(unit["entries"])
        return units, None

    def live_blocks(self):
        """(paddr, kind, owner, hash) of every live block: CA entries, system tree nodes."""
        for digest, (paddr, _r, kind) in self.ca.items():
            yield paddr, kind, C.TREE_FS if kind == C.BLOCK_NODE else 0, digest
        for kind, paddr, digest, _l, _k in self.sysnodes:
            yield paddr, C.BLOCK_SYSNODE, kind, digest

    def check_summaries(self):
        log.info("Checking log unit summaries")
        lg = self.log
        segs = {lg.seg_of(e[0]) for e in self.ca.values()} | {lg.seg_of(n[1]) for n in self.sysnodes}
        segs = sorted(segs | {s for s, e in self.usage_table.items() if e[0] != C.SEG_FREE})
        self.progress.pass_("summaries", len(segs))
        described = {}
        self.bad_units = {}
        for s in segs:
            self.progress.update()
            units, why = self.log_units(s)
            for base, unit in units:
                described.update(zip(range(base, base + len(unit["entries"])), unit["entries"]))
            if why:
                self.bad_units[s] = why
        undescribed, owners = {}, {}
        for paddr, kind, owner, digest in self.live_blocks():
            if paddr in owners:
                self._paddr_clash(paddr, owners[paddr], digest)
            owners[paddr] = digest
            got = described.get(paddr)
            if got is None:
                undescribed.setdefault(lg.seg_of(paddr), []).append(paddr)
            elif got[0] != kind or got[1] != owner or got[2] != digest[:C.HASH_PREFIX_SIZE]:
                self.misdescribed.append(paddr)
                self.problem("check_summaries", f"block {paddr}: summary says {KIND_NAMES.get(got[0])} "
                             f"owner {got[1]} hash {got[2].hex()}, the block is {KIND_NAMES[kind]} "
                             f"owner {owner} hash {digest[:C.HASH_PREFIX_SIZE].hex()}", "summary")
        for s, paddrs in sorted(undescribed.items()):
            why = self.bad_units.get(s)
            paddrs.sort()
            self.problem("check_summaries", f"segment {s}: {len(paddrs)} live blocks (first {paddrs[0]}) not "
                         f"described by a log unit summary" + (f" ({why})" if why else ""), "summary")
        self.undescribed = undescribed

    def _paddr_clash(self, paddr, first, second):
        """Two live blocks at one address: at most one of them is really there."""
        self.clashes.update((first, second))
        self.problem("check_summaries", f"blocks {first.hex()[:16]} and {second.hex()[:16]} both live at "
                     f"block {paddr}", "refcount")
