"""Blocks by content: the node cache, data blocks and the content-address index."""
from collections import OrderedDict

import numpy as np

from .errors import CorruptError
from .format import constants as C
from .format.calog import calog_capacity, decode_calog, encode_calog
from .format.checksum import calog_hash, data_hash
from .format.items import pack_ca, unpack_ca
from .format.node import block_digest, child_hashes, decode_node, encode_node
from .format.pointer import NULL_POINTER


class ContentIndex:
    """blake3 -> [paddr, refcount, kind], as the CA tree overlaid by the CA log (entries
    changed since the last merge, newest wins) and the changes since the last commit.  A
    reference is a pointer in a stored node, or a snapshot holding a root."""

    def __init__(self, tree):
        self.tree = tree
        self.delta = {}          # hash -> [paddr, ref, kind], or None once freed
        self.zero = set()        # hashes whose count reached 0 (freed by collect)
        self.stored = {}         # hash -> entry bytes in the CA view, for entries now in delta
        self.logged = {}         # hash -> [paddr, ref, kind] or None (deleted): the CA log
        self.chain = []          # addresses of the CA log blocks, newest first
        self.head = NULL_POINTER  # newest CA log block
        self.entries = 0         # entries in the chain (an entry logged twice counts twice)
        self.force_merge = False  # merge at the next commit (the cleaner wants a chain block moved)
        self._words = None       # (tree, sorted first words of its keys) for may_hold

    def load_log(self, read_raw, head, entries):
        """Read the CA log chain from its head (newest block first: the first value seen wins)."""
        self.head, self.entries = head, entries
        paddr, h = head
        seen = set()
        while paddr:
            if paddr in seen:
                raise CorruptError(f"CA log: chain loops at block {paddr}")
            seen.add(paddr)
            raw = read_raw(paddr)
            if calog_hash(raw) != h:
                raise CorruptError(f"CA log block {paddr}: content does not match its address {h.hex()[:16]}")
            blk = decode_calog(raw)
            for digest, addr, ref, kind in blk["entries"]:
                if digest not in self.logged:
                    self.logged[digest] = [addr, ref, kind] if addr or ref else None
            self.chain.append(paddr)
            paddr, h = blk["prev_paddr"], blk["prev_hash"]

    def _lookup(self, h):
        """The committed entry (log, then tree) as a list, or None."""
        if h in self.logged:
            e = self.logged[h]
            return list(e) if e is not None else None
        raw = self.tree.get(h)
        return list(unpack_ca(raw)) if raw is not None else None

    def scan(self):
        """[(hash, entry bytes)] of the committed CA view (tree overlaid by the log), in order."""
        view = {bytes(k): bytes(v) for k, v in self.tree.scan()}
        for h, e in self.logged.items():
            if e is None:
                view.pop(h, None)
            else:
                view[h] = pack_ca(*e)
        return sorted(view.items())

    def get(self, h):
        if h in self.delta:
            return self.delta[h]
        return self._lookup(h)

    def get_new(self, h):
        """get(h) for a hash may_hold said the CA tree lacks: the tree is not walked."""
        if h in self.delta:
            return self.delta[h]
        e = self.logged.get(h)
        return list(e) if e is not None else None

    def may_hold(self, hashes):
        """A bool array: False where the CA tree surely lacks the hash.  Bulk stores (an
        import) ask about thousands of new blocks, each a tree walk of ~15 us; instead one
        sorted array of the first 8-byte word of every tree key (8 bytes per block, built
        once per merge), searched for all the hashes at once."""
        if self._words is None or self._words[0] is not self.tree:
            if self.tree.root is None:
                words = np.zeros(0, dtype=np.uint64)
            else:
                words = np.concatenate([np.frombuffer(b"".join(keys), dtype=np.uint64)[::4]
                                        for keys in self.tree.leaf_keys()])
                words.sort()
            self._words = (self.tree, words)
        words = self._words[1]
        want = np.frombuffer(b"".join(hashes), dtype=np.uint64)[::4]
        if not len(words):
            return np.zeros(len(want), dtype=bool)
        at = np.minimum(np.searchsorted(words, want), len(words) - 1)
        return words[at] == want

    def _entry(self, h):
        e = self.delta.get(h)
        if e is None:
            if h in self.delta:
                raise CorruptError(f"reference to freed block {h.hex()[:16]}")
            e = self._lookup(h)
            if e is None:
                raise CorruptError(f"reference to unknown block {h.hex()[:16]}")
            self.stored[h] = pack_ca(*e)
            self.delta[h] = e
        return e

    def new(self, h, paddr, kind, ref):
        self.delta[h] = [paddr, ref, kind]
        if ref == 0:
            self.zero.add(h)

    def incref(self, h, n=1):
        self._entry(h)[1] += n

    def decref(self, h):
        e = self._entry(h)
        if e[1] <= 0:
            raise CorruptError(f"reference count underflow for block {h.hex()[:16]}")
        e[1] -= 1
        if e[1] == 0:
            self.zero.add(h)

    def relocate(self, h, paddr):
        self._entry(h)[0] = paddr

    def dirty(self):
        return bool(self.delta)

    def changes(self):
        """[(hash, entry or None)] in hash order: the entries whose value differs from the
        CA view (+1 then -1 is no change; a block made and freed in one commit is none)."""
        out = []
        for h in sorted(self.delta):
            e = self.delta[h]
            if h in self.stored:
                if e is None or pack_ca(*e) != self.stored[h]:
                    out.append((h, e))
            elif e is not None or h in self.logged or self.tree.get(h) is not None:
                out.append((h, e))     # (fsck's repair sets delta without `stored`)
        self.delta.clear()
        self.stored.clear()
        return out

    def commit(self, log, block_size, limit=C.CALOG_LIMIT):
        """Append the changes to the CA log, or merge log and changes into the CA tree when
        the log would hold more than `limit` entries.  Returns the chain blocks written."""
        changes = self.changes()
        if self.force_merge or (changes and self.entries + len(changes) > limit):
            self.merge(log, changes)
            return 0
        per = calog_capacity(block_size)
        for i in range(0, len(changes), per):
            entries = [(h, *(e or (0, 0, 0))) for h, e in changes[i:i + per]]
            block = encode_calog(*self.head, entries, block_size)
            digest = calog_hash(block)
            paddr = log.append(C.BLOCK_SYSNODE, C.OWNER_CALOG, digest, block, reserve_ok=True)
            self.chain.insert(0, paddr)
            self.head = (paddr, digest)
            self.entries += len(entries)
        for h, e in changes:
            self.logged[h] = e
        return -(-len(changes) // per)

    def merge(self, log, changes=()):
        """Write log + changes into the CA tree (sorted: each leaf is copied once); the
        chain blocks are freed."""
        self._words = None
        merged = dict(self.logged)
        merged.update(changes)
        self.tree.update_sorted((h, None if e is None else pack_ca(*e)) for h, e in sorted(merged.items()))
        for paddr in self.chain:
            log.add_live(paddr, -1)
        self.logged.clear()
        self.chain.clear()
        self.head, self.entries, self.force_merge = NULL_POINTER, 0, False


class VerifiedBlocks:
    """Data blocks whose blake3 this mount has checked, so a block read again is not hashed
    again: a direct-mapped table of (paddr, use of its segment, hash).  A block's bytes at
    an address never change while its segment is in one use (the log never writes in
    place), and a reused segment has another alloc_seq; the hash must match as well, since
    a pointer of an older use may still name the address as a stale hint."""

    SLOTS = 1 << 18          # 12 MiB of table, 1 GiB of 4 KiB blocks

    def __init__(self, log):
        self.log = log
        self.paddr = np.zeros(self.SLOTS, dtype=np.uint64)     # 0: empty (never a data block)
        self.use = np.zeros(self.SLOTS, dtype=np.uint64)
        self.hash = np.zeros((self.SLOTS, 4), dtype=np.uint64)

    def _uses(self, paddrs):
        return self.log.alloc_seq[(paddrs - self.log.first) // self.log.seg_blocks]

    def known(self, paddrs, hashes):
        """Which of the blocks (paddrs, hashes as 4 uint64 words each) were verified."""
        slots = paddrs % self.SLOTS
        return ((self.paddr[slots] == paddrs) & (self.use[slots] == self._uses(paddrs))
                & (self.hash[slots] == hashes).all(axis=1))

    def known_one(self, paddr, h):
        """known() of one block (h: its 32-byte hash), without numpy's per-call cost."""
        s = paddr % self.SLOTS
        return (int(self.paddr[s]) == paddr and int(self.use[s]) == int(self._uses(paddr))
                and self.hash[s].tobytes() == h)

    def add_one(self, paddr, h):
        log = self.log
        head = log.seg_start(log.head_seg)
        if head + log.head_off <= paddr < head + log.seg_blocks:      # as add() says
            return
        s = paddr % self.SLOTS
        self.paddr[s] = paddr
        self.use[s] = self._uses(paddr)
        self.hash[s] = np.frombuffer(h, np.uint64)

    def add(self, paddrs, hashes):
        # Not past the write position of the open segment: a stale hint may name an
        # address there that still holds the block of the segment's previous use, which
        # the log will overwrite within this same use.
        log = self.log
        head = log.seg_start(log.head_seg)
        keep = (paddrs < head + log.head_off) | (paddrs >= head + log.seg_blocks)
        paddrs, hashes = paddrs[keep], hashes[keep]
        slots = paddrs % self.SLOTS
        self.paddr[slots] = paddrs
        self.use[slots] = self._uses(paddrs)
        self.hash[slots] = hashes


# What a decoded node costs in memory, roughly: a leaf of 4 KiB held as Python bytes and
# lists is 2-3x its block (block-map leaf: ~65 items, 9.6 KiB measured).
NODE_COST = 4096
ITEM_COST = 100


def node_cost(node):
    return NODE_COST + ITEM_COST * len(node[1])


class BlockStore:
    def __init__(self, dev, log, block_size, cache_bytes=64 << 20):
        self.dev = dev
        self.log = log
        self.block_size = block_size
        self.cache = OrderedDict()       # hash -> (level, keys, vals), decoded stored nodes
        self.cache_bytes = cache_bytes   # their node_cost together stays below this
        self.cached = 0
        self.ca = None                   # ContentIndex, set once the CA tree is open
        self.verified = VerifiedBlocks(log)
        self.stats = dict(data_written=0, data_deduped=0, nodes_written=0, nodes_deduped=0,
                          sysnodes_written=0, hint_misses=0)

    # ---- raw blocks ----------------------------------------------------------------
    def read_raw(self, paddr):
        pending = self.log.pending_block(paddr)
        if pending is not None:
            return pending
        if not self.log.valid_paddr(paddr):
            raise CorruptError(f"block pointer {paddr} outside the segment area")
        return self.dev.read(paddr)

    def _located(self, paddr, h, check, indexed=True):
        """Read the block a pointer names: the paddr is a hint, the hash decides.  A miss
        is looked up in the CA index (the cleaner moves blocks without touching parents);
        system nodes are not in it (indexed=False): their paddr is exact."""
        raw = self.read_raw(paddr)
        got = check(raw)
        if got == h:
            return raw, got
        e = self.ca.get(h) if self.ca is not None and indexed else None
        if e is not None and e[0] != paddr:
            self.stats["hint_misses"] += 1
            raw = self.read_raw(e[0])
            got = check(raw)
            if got == h:
                return raw, got
        raise CorruptError(f"block {paddr}: content does not match its address {h.hex()[:16]}")

    # ---- nodes -------------------------------------------------------------------------
    def load_node(self, kind, ptr):
        paddr, h = ptr
        hit = self.cache.get(h)
        if hit is not None:
            self.cache.move_to_end(h)
            return hit
        decoded = []

        def check(raw):
            try:
                tree, level, gen, keys, vals = decode_node(raw, expect_tree=kind)
            except CorruptError:
                return None
            decoded[:] = [(level, keys, vals)]
            return block_digest(raw, tree, level, keys, vals)

        # A damaged CA node must not be looked up in the CA index: that recursed forever.
        self._located(paddr, h, check, indexed=kind == C.TREE_FS)
        return self._remember(h, decoded[0])

    def _remember(self, h, node):
        old = self.cache.get(h)
        if old is not None:
            self.cached -= node_cost(old)
        self.cache[h] = node
        self.cached += node_cost(node)
        while self.cached > self.cache_bytes and len(self.cache) > 1:
            self.cached -= node_cost(self.cache.popitem(last=False)[1])
        return node

    def forget_node(self, h):
        node = self.cache.pop(h, None)
        if node is not None:
            self.cached -= node_cost(node)

    def put_node(self, kind, level, keys, vals, generation):
        """Store a node; returns its pointer.  FS nodes are content addressed: an equal
        node already stored is reused.  A node's count is raised by whoever points at it
        (a new parent node, or a snapshot entry for a root), not here."""
        block, h = encode_node(kind, level, generation, keys, vals, self.block_size)
        if kind == C.TREE_FS:
            e = self.ca.get(h)
            if e is not None:
                self.stats["nodes_deduped"] += 1
                return e[0], h
            paddr = self.log.append(C.BLOCK_NODE, kind, h, block, reserve_ok=True)
            self.ca.new(h, paddr, C.BLOCK_NODE, 0)
            for child in child_hashes(kind, level, keys, vals):
                self.ca.incref(child)
            self.stats["nodes_written"] += 1
        else:
            paddr = self.log.append(C.BLOCK_SYSNODE, kind, h, block, reserve_ok=True)
            self.stats["sysnodes_written"] += 1
        self._remember(h, (level, keys, vals))
        return paddr, h

    # ---- data ------------------------------------------------------------------------------
    def put_data(self, block, h=None, new=False):
        """Store one full data block (unreferenced until a stored leaf points at it).  h:
        its data_hash when known; new: the CA tree surely lacks it (ContentIndex.may_hold).
        A read-only memoryview (of an import's piece) is kept as it is until the unit is
        written; anything else is copied."""
        if h is None:
            h = data_hash(block)
        e = self.ca.get_new(h) if new else self.ca.get(h)
        if e is not None:
            self.stats["data_deduped"] += 1
            return e[0], h
        if not (type(block) is memoryview and block.readonly):
            block = bytes(block)
        paddr = self.log.append(C.BLOCK_DATA, 0, h, block)
        self.ca.new(h, paddr, C.BLOCK_DATA, 0)
        self.stats["data_written"] += 1
        return paddr, h

    def read_data(self, paddr, h):
        return self._located(paddr, h, data_hash)[0]

    def read_into(self, out, idx, ptrs):
        """Fill out (a bytearray of whole blocks) at block positions idx with the data
        blocks ptrs names (an (n, 5) uint64 array of packed pointers: paddr, then the
        blake3 as four words).  Each run of adjacent addresses is one preadv straight into
        out; then every block is checked against its hash, except those this mount has
        checked already (VerifiedBlocks).  A block that does not match is looked for
        through the content index (a stale location hint) or is corrupt."""
        bs, n, log = self.block_size, len(idx), self.log
        if not n:
            return
        paddrs, hashes = ptrs[:, 0], ptrs[:, 1:]
        mv = memoryview(out)
        cut = (np.flatnonzero((np.diff(idx) != 1) | (np.diff(paddrs) != 1)) + 1).tolist()
        check = np.ones(n, dtype=bool)
        for i, j in zip([0] + cut, cut + [n]):
            start, at = int(paddrs[i]), int(idx[i]) * bs
            if log.valid_paddr(start) and log.valid_paddr(start + j - i - 1) and not log.unwritten(start, j - i):
                self.dev.read_into(start, mv[at:at + (j - i) * bs])
                continue
            check[i:j] = False                  # not (all) on the device yet, or a bad hint
            for k in range(i, j):
                at = int(idx[k]) * bs
                mv[at:at + bs] = self.read_data(int(paddrs[k]), hashes[k].tobytes())
        todo = np.flatnonzero(check)
        if not len(todo):
            return
        todo = todo[~self.verified.known(paddrs[todo], hashes[todo])]
        good = np.ones(len(todo), dtype=bool)
        for t, k, at in zip(range(len(todo)), todo.tolist(), (idx[todo] * bs).tolist()):
            blk = mv[at:at + bs]
            h = hashes[k].tobytes()
            if data_hash(blk) != h:
                blk[:] = self.read_data(int(paddrs[k]), h)
                good[t] = False
        self.verified.add(paddrs[todo[good]], hashes[todo[good]])

    def read_few_into(self, out, blocks):
        """read_into() of a few blocks ((block number within out, paddr, hash) each, in
        order) without numpy: most files are a few blocks, where numpy's per-call cost was
        most of a read.  One pread per run of adjacent blocks, as read_into."""
        bs, log, mv, verified = self.block_size, self.log, memoryview(out), self.verified
        i, n = 0, len(blocks)
        while i < n:
            k0, p0, _h = blocks[i]
            j = i + 1
            while j < n and blocks[j][0] == k0 + j - i and blocks[j][1] == p0 + j - i:
                j += 1
            if log.valid_paddr(p0) and log.valid_paddr(p0 + j - i - 1) and not log.unwritten(p0, j - i):
                self.dev.read_into(p0, mv[k0 * bs:(k0 + j - i) * bs])
                for k, paddr, h in blocks[i:j]:
                    if verified.known_one(paddr, h):
                        continue
                    blk = mv[k * bs:(k + 1) * bs]
                    if data_hash(blk) != h:
                        blk[:] = self.read_data(paddr, h)
                    else:
                        verified.add_one(paddr, h)
            else:                                       # not on the device yet, or a bad hint
                for k, paddr, h in blocks[i:j]:
                    mv[k * bs:(k + 1) * bs] = self.read_data(paddr, h)
            i = j

    # ---- freeing ----------------------------------------------------------------------------
    def collect(self):
        """Free every block whose count is 0, and what only it referenced."""
        ca = self.ca
        while ca.zero:
            h = ca.zero.pop()
            e = ca.delta.get(h)
            if e is None or e[1] != 0:
                continue
            if e[2] == C.BLOCK_NODE:
                level, keys, vals = self.load_node(C.TREE_FS, (e[0], h))
                for child in child_hashes(C.TREE_FS, level, keys, vals):
                    ca.decref(child)
            self.log.add_live(e[0], -1)
            ca.delta[h] = None
            self.forget_node(h)
