"""File contents: inline data for small files, otherwise a map of block index -> pointer
in the FS tree.  Writes go to a dirty cache of whole blocks and reach the store when the
cache passes its limit or at commit.  All-zero blocks become holes: nothing is stored."""
import weakref

import numpy as np

from .errors import CorruptError
from .format import constants as C
from .format.checksum import data_hash
from .format.items import BLOCK_KEY_DTYPE, block_end, block_key
from .format.pointer import POINTER_SIZE, pack_pointer, unpack_pointer


# Block-map items a read decodes one by one rather than as arrays: past that (a 128 KiB
# READ of a big file) the vectorized checks are cheaper.
FEW = 16


class DirtyBudget:
    """The dirty-block bytes the trees of one engine may hold together (a daemon's half of
    cache=, whatever the number of trees it serves): a write over it flushes the trees
    holding the most first, so the daemon's memory does not grow with its trees."""

    def __init__(self, limit):
        self.limit = limit
        self.members = weakref.WeakSet()          # FileData

    def over(self):
        return sum(d.dirty_bytes for d in self.members) > self.limit

    def fullest(self):
        return sorted((d for d in self.members if d.dirty_bytes), key=lambda d: -d.dirty_bytes)


class FileData:
    def __init__(self, tree, store, block_size, budget):
        self.tree = tree
        self.store = store
        self.bs = block_size
        self.zero = bytes(block_size)
        self.zero_hash = data_hash(self.zero)
        self.dirty = {}            # ino -> {block index: bytearray}
        self.dirty_bytes = 0
        self.budget = budget
        budget.members.add(self)

    # ---- reading -------------------------------------------------------------------
    def read(self, ind, offset, size):
        """The bytes at offset: one buffer of the blocks covered, filled by the store (one
        preadv per run), dirty blocks laid over it, the ends trimmed in place."""
        if ind.is_inline:
            return ind.inline[offset:offset + size]
        end = min(ind.size, offset + size)
        if offset >= end:
            return b""
        bs = self.bs
        first, last = offset // bs, (end - 1) // bs
        out = bytearray((last - first + 1) * bs)             # holes stay zero
        items = list(self.tree.scan(block_key(ind.ino, first), block_key(ind.ino, last + 1)))
        dirty = self.dirty.get(ind.ino)
        if items and not dirty and len(items) <= FEW:
            blocks = []
            for k, v in items:
                if len(v) != POINTER_SIZE:
                    raise CorruptError(f"inode {ind.ino}: a block map value is not one pointer")
                blocks.append((int.from_bytes(k[9:17], "big") - first, int.from_bytes(v[:8], "little"),
                               bytes(v[8:])))
            self.store.read_few_into(out, blocks)
        elif items:
            keys, vals = zip(*items)
            idx = np.frombuffer(b"".join(keys), BLOCK_KEY_DTYPE)["index"].astype(np.int64) - first
            packed = b"".join(vals)
            if len(packed) != len(vals) * POINTER_SIZE:
                raise CorruptError(f"inode {ind.ino}: a block map value is not one pointer")
            ptrs = np.frombuffer(packed, np.uint64).reshape(-1, POINTER_SIZE // 8)
            if dirty:
                keep = ~np.isin(idx, np.fromiter(dirty, np.int64) - first)
                idx, ptrs = idx[keep], ptrs[keep]
            self.store.read_into(out, idx, ptrs)
        if dirty:
            for i, buf in dirty.items():
                if first <= i <= last:
                    out[(i - first) * bs:(i - first + 1) * bs] = buf
        start = offset - first * bs
        del out[start + end - offset:]                       # in place: no copy
        del out[:start]
        return out

    def _block(self, ino, idx):
        """A writable copy of one block (copy-up of that block only)."""
        d = self.dirty.setdefault(ino, {})
        buf = d.get(idx)
        if buf is None:
            raw = self.tree.get(block_key(ino, idx))
            buf = bytearray(self.store.read_data(*unpack_pointer(raw)) if raw else self.zero)
            d[idx] = buf
            self.dirty_bytes += self.bs
        return buf

    # ---- writing -----------------------------------------------------------------------
    def write(self, ind, offset, data):
        """Write data at offset; updates ind.size / inline (caller stores the inode)."""
        if not data:               # POSIX: a zero-length write changes nothing, not even the size
            return
        end = offset + len(data)
        if ind.is_inline or (ind.size == 0 and not self._has_blocks(ind)):
            if end <= C.INLINE_MAX:
                cur = ind.inline.ljust(max(end, ind.size), b"\0")
                ind.inline = cur[:offset] + bytes(data) + cur[end:]
                ind.flags |= C.INODE_INLINE
                ind.size = len(ind.inline)
                return
            self._uninline(ind)
        bs = self.bs
        mv = memoryview(data)
        pos = offset
        while pos < end:
            idx, within = divmod(pos, bs)
            n = min(bs - within, end - pos)
            if n == bs:
                d = self.dirty.setdefault(ind.ino, {})
                if idx not in d:
                    self.dirty_bytes += bs
                d[idx] = bytearray(mv[pos - offset:pos - offset + n])
            else:
                self._block(ind.ino, idx)[within:within + n] = mv[pos - offset:pos - offset + n]
            pos += n
        ind.size = max(ind.size, end)

    def put_blocks(self, ind, offset, data, hashes):
        """Store data at a block-aligned offset at or past the end of the file (so none of
        its blocks exist yet) straight to the store, not through the dirty cache: an
        import's pieces, whose blocks the reader thread hashed (hashes[i]: block i, the
        last one zero-padded if data ends inside it)."""
        if ind.is_inline:                                    # a new, empty file
            ind.inline = b""
            ind.flags &= ~C.INODE_INLINE
        bs, ino, put_data, zero = self.bs, ind.ino, self.store.put_data, self.zero_hash
        mv = memoryview(data)
        first = offset // bs
        items = []
        maybe = self.store.ca.may_hold(hashes)
        for i, h in enumerate(hashes):
            if h == zero:
                continue                                     # a hole
            block = mv[i * bs:(i + 1) * bs]
            if len(block) < bs:
                block = bytes(block) + bytes(bs - len(block))
            paddr = put_data(block, h, new=not maybe[i])[0]
            items.append((block_key(ino, first + i), pack_pointer(paddr, h)))
        self.tree.update_sorted(items)
        ind.size = max(ind.size, offset + len(data))

    def _has_blocks(self, ind):
        return bool(self.dirty.get(ind.ino)) or next(
            iter(self.tree.scan(block_key(ind.ino, 0), block_end(ind.ino))), None) is not None

    def _uninline(self, ind):
        data = ind.inline
        ind.inline = b""
        ind.flags &= ~C.INODE_INLINE
        if data:
            buf = self._block(ind.ino, 0)
            buf[:len(data)] = data

    def truncate(self, ind, size):
        if ind.is_inline:
            if size <= C.INLINE_MAX:
                ind.inline = ind.inline[:size].ljust(size, b"\0")
                ind.size = size
                return
            self._uninline(ind)
        bs = self.bs
        if size < ind.size:
            keep = -(-size // bs)                    # blocks that stay
            for idx in [i for i in self.dirty.get(ind.ino, {}) if i >= keep]:
                del self.dirty[ind.ino][idx]
                self.dirty_bytes -= bs
            for key in [k for k, _v in self.tree.scan(block_key(ind.ino, keep), block_end(ind.ino))]:
                self.tree.delete(key)
            if size % bs:                            # zero the tail of the last block
                if self.tree.get(block_key(ind.ino, keep - 1)) is not None or keep - 1 in self.dirty.get(ind.ino, {}):
                    self._block(ind.ino, keep - 1)[size % bs:] = bytes(bs - size % bs)
        ind.size = size

    def forget(self, ino):
        """Drop the dirty blocks of a freed inode."""
        self.dirty_bytes -= self.bs * len(self.dirty.pop(ino, {}))

    def over_limit(self):
        return self.budget.over()

    def flush(self):
        """Store every dirty block (hash, dedup, append to the log) and map it."""
        put_data, zero = self.store.put_data, self.zero
        for ino in sorted(self.dirty):
            blocks = self.dirty[ino]
            self.tree.update_sorted(
                (block_key(ino, idx), None if blocks[idx] == zero else pack_pointer(*put_data(blocks[idx])))
                for idx in sorted(blocks))
        self.dirty.clear()
        self.dirty_bytes = 0
