"""The segment log: appends blocks into log units and keeps live-block counts per segment."""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import NoSpaceError
from .format import constants as C
from .format.segment import encode_summary, max_entries


class SegmentLog:
    """Blocks are appended to the open log unit; a unit is written as one contiguous
    [summary][payload...] run when it fills, or at flush/commit.  Until then its blocks
    are readable from memory (`pending_block`)."""

    def __init__(self, dev, sb, head_segment, head_offset, next_unit_seq):
        self.dev = dev
        self.bs = sb["block_size"]
        self.seg_blocks = sb["segment_blocks"]
        self.first = sb["first_segment_block"]
        self.nsegs = sb["segment_count"]
        self.unit_max = min(max_entries(self.bs), self.seg_blocks - 1)
        self.live = np.zeros(self.nsegs, dtype=np.int64)       # blocks referenced, per segment
        self.state = np.zeros(self.nsegs, dtype=np.uint8)      # SEG_*
        self.alloc_seq = np.zeros(self.nsegs, dtype=np.uint64) # unit seq when (re)opened
        self.freed_seq = np.zeros(self.nsegs, dtype=np.uint64) # commit that emptied it
        self.pinned = np.zeros(self.nsegs, dtype=np.int64)     # usage-table nodes held in it
        self.dirty = set()                                     # segments whose entry changed
        self.head_seg, self.head_off = head_segment, head_offset
        self.next_unit_seq = next_unit_seq
        self.commit_seq = 0            # seq of the checkpoint being built
        self.reserve = C.RESERVED_SEGMENTS
        self.commit_reserve = lambda: 0  # segments the next commit may need (set by the engine)
        self.units_written = 0
        self.blocks_written = 0
        self._writer, self._writer_pid = None, None
        self.inflight = []             # (first payload paddr, blocks, future) being written
        self._reset_unit()

    # ---- geometry -------------------------------------------------------------
    def seg_of(self, paddr):
        return (paddr - self.first) // self.seg_blocks

    def seg_start(self, segno):
        return self.first + segno * self.seg_blocks

    def valid_paddr(self, paddr):
        return self.first <= paddr < self.first + self.nsegs * self.seg_blocks

    # ---- appending --------------------------------------------------------------
    def _reset_unit(self):
        self.unit_entries = []
        self.unit_blocks = []
        self.unit_live = 0
        self.unit_base = self.seg_start(self.head_seg) + self.head_off + 1  # first payload paddr
        self.unit_room = min(self.unit_max, self.seg_blocks - self.head_off - 1)

    def append(self, kind, owner, digest, block, *, reserve_ok=False):
        """Queue one block; returns its physical address."""
        if self.unit_room <= 0:
            self.flush_unit()
            if self.seg_blocks - self.head_off < 2:
                self._advance(reserve_ok)
            self._reset_unit()
        paddr = self.unit_base + len(self.unit_blocks)
        self.unit_entries.append((kind, owner, digest))
        self.unit_blocks.append(block)
        self.unit_room -= 1
        if owner != C.TREE_USAGE:   # usage-table nodes are counted in `pinned`, see spec
            self.unit_live += 1     # added to `live` when the unit is handed off
        return paddr

    def pending_block(self, paddr):
        i = paddr - self.unit_base
        if 0 <= i < len(self.unit_blocks):
            return self.unit_blocks[i]
        for base, blocks, _job in self.inflight:
            if 0 <= paddr - base < len(blocks):
                return blocks[paddr - base]
        return None

    def unwritten(self, start, count):
        """Whether any of blocks start..start+count-1 is still only in memory."""
        ranges = [(self.unit_base, len(self.unit_blocks))] + [(b, len(bl)) for b, bl, _j in self.inflight]
        return any(b < start + count and start < b + n for b, n in ranges if n)

    def flush_unit(self):
        """Hand the open unit to the writer thread (pwritev releases the GIL, so the
        write overlaps hashing and tree work); at most two units are in flight."""
        if not self.unit_blocks:
            return
        summary = encode_summary(self.next_unit_seq, self.commit_seq, self.head_seg,
                                 self.unit_entries, self.bs)
        blocks = self.unit_blocks
        job = self.writer().submit(self.dev.write, self.unit_base - 1, [summary, *blocks])
        self.inflight.append((self.unit_base, blocks, job))
        while len(self.inflight) > 2:
            self.inflight.pop(0)[2].result()
        self.count_pending()
        self.next_unit_seq += 1
        self.head_off += 1 + len(self.unit_blocks)
        self.units_written += 1
        self.blocks_written += 1 + len(self.unit_blocks)
        self._mark(self.head_seg)
        self._reset_unit()

    def count_pending(self):
        """Add the open unit's blocks to `live` (deferred per unit: numpy per block is slow)."""
        self.live[self.head_seg] += self.unit_live
        self.unit_live = 0
        self._mark(self.head_seg)

    def drain(self):
        """Write the open unit and wait for every write in flight (before a barrier)."""
        self.flush_unit()
        while self.inflight:
            self.inflight.pop(0)[2].result()

    def writer(self):
        """The writer thread, made lazily per process (a daemon forks after opening)."""
        if self._writer_pid != os.getpid():
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="ctrfs-log")
            self._writer_pid = os.getpid()
        return self._writer

    def close(self):
        self.drain()
        if self._writer is not None and self._writer_pid == os.getpid():
            self._writer.shutdown()

    def fits_in_head(self, n):
        """Whether n more appends stay inside the head segment (summaries included)."""
        left = self.seg_blocks - self.head_off
        if self.unit_blocks:    # the open unit takes what it has room for, summary included
            take = min(n, self.unit_room)
            n -= take
            left -= 1 + len(self.unit_blocks) + take
        units = -(-n // self.unit_max)
        return n + units <= left

    def next_segment(self):
        """Close the head segment early and open a fresh one (reserve allowed)."""
        self.flush_unit()
        self._advance(True)
        self._reset_unit()

    # ---- segment allocation ------------------------------------------------------
    def reusable(self):
        """Free segments whose last contents no checkpoint slot can still reference."""
        seq = self.commit_seq
        return np.flatnonzero((self.state == C.SEG_FREE) &
                              ((self.freed_seq == 0) | (self.freed_seq + 2 <= seq)))

    def space_waiting(self):
        """Whether freed segments wait for commits before they can be reused: the
        periodic commit then runs even with nothing changed, so `rm` gives space back
        within two commit intervals on an idle mount too."""
        return bool(np.any((self.state == C.SEG_FREE) & (self.freed_seq != 0)
                           & (self.freed_seq + 2 > self.commit_seq)))

    def free_count(self):
        return len(self.reusable())

    def _advance(self, reserve_ok):
        free = self.reusable()
        if len(free) == 0 or (not reserve_ok and len(free) <= self.reserve + self.commit_reserve()):
            raise NoSpaceError("no free segments left on the device")
        after = free[free > self.head_seg]
        nxt = int(after[0] if len(after) else free[0])
        self.state[self.head_seg] = C.SEG_FULL
        self._mark(self.head_seg)
        self.head_seg, self.head_off = nxt, 0
        self.state[nxt] = C.SEG_OPEN
        self.alloc_seq[nxt] = self.next_unit_seq
        self.freed_seq[nxt] = 0
        self._mark(nxt)

    # ---- live counts -----------------------------------------------------------------
    def add_live(self, paddr, delta):
        s = self.seg_of(paddr)
        self.live[s] += delta
        self._mark(s)

    def _mark(self, segno):
        self.dirty.add(int(segno))

    def settle(self):
        """At commit: full segments with nothing live become free (reusable two commits on)."""
        for s in list(self.dirty):
            if self.state[s] == C.SEG_FULL and self.live[s] == 0 and self.pinned[s] == 0:
                self.state[s] = C.SEG_FREE
                self.freed_seq[s] = self.commit_seq
