"""fsck checks of the trees: every node of the system trees and of each snapshot's FS
tree (each distinct node once), the pointers between them, the reference counts the
pointers imply, and with --verify-data the blake3 of every data block.  A mixin of
`checks.Checker`; the walks record what they find for the later checks and the repair."""
import logging
from itertools import compress, repeat
from operator import itemgetter, ne

import numpy as np

from ..errors import CorruptError, UsageError
from ..format import constants as C
from ..format.calog import decode_calog
from ..format.checksum import calog_hash, data_hash
from ..format.items import CA_ENTRY_SIZE, unpack_ca, unpack_snap, unpack_usage
from .namespace import block_map_rows
from .walk import BadNode, NodeInfo, walk_tree

log = logging.getLogger("ctrfs.fsck")

_PADDR, _REFCOUNT = itemgetter(0), itemgetter(1)   # of a CA entry
KIND_NAMES = {C.BLOCK_DATA: "data", C.BLOCK_NODE: "node", C.BLOCK_SYSNODE: "system node"}
SYSTEM_TREES = ((C.TREE_SNAP, "snap_root", "snapshot table", "salvage"),
                (C.TREE_CA, "ca_root", "content-address index", "refcount"),
                (C.TREE_USAGE, "usage_root", "segment usage table", "usage"),
                (C.TREE_REMAP, "remap_root", "inode remap table", "salvage"))


def short(h):
    return h.hex()[:16]


class TreeChecks:
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
                    self.sysnodes.append((kind, info.paddr, p[1], info.level, bytes(info.lo_key)))

            for leaf in walk_tree(self.reader, kind, ptr, visit=visit, problem=problem)[0]:
                if kind == C.TREE_CA and leaf.fixed is not None:
                    items = self._ca_rows(leaf.fixed)  # the well-formed majority, as arrays
                else:
                    items = zip(leaf.keys, leaf.vals)
                if kind == C.TREE_CA:
                    items = self._ca_items(items)
                for key, val in items:
                    try:
                        self._system_item(kind, bytes(key), bytes(val))
                    except (CorruptError, UsageError) as exc:
                        problem(f"item {bytes(key).hex()[:40]}: {exc}")
        self.check_calog()
        self.note(f"{len(self.snapshots)} snapshots, {len(self.ca)} content-address entries, "
                  f"{len(self.sysnodes)} system tree nodes")

    def check_calog(self):
        """The CA log chain: each block's hash link, CRC and entries; its entries are laid
        over the CA tree's (the newest value of a hash wins) to give the CA view."""
        roots = self.cp["roots"]
        paddr, digest = roots["calog_root"]["paddr"], roots["calog_root"]["hash"]
        self.bad_sys[C.OWNER_CALOG] = 0
        logged, count, seen = {}, 0, set()

        def problem(msg):
            self.bad_sys[C.OWNER_CALOG] += 1
            self.problem("check_calog", f"CA log: {msg}", "refcount")

        while paddr:
            if paddr in seen:
                problem(f"chain loops at block {paddr}")
                break
            seen.add(paddr)
            try:
                raw = self.reader.read_block(paddr)
                if calog_hash(raw) != digest:
                    raise CorruptError(f"content does not match its address {short(digest)}")
                blk = decode_calog(raw)
            except CorruptError as exc:
                problem(f"block {paddr}: {exc}")
                break
            self.sysnodes.append((C.OWNER_CALOG, paddr, digest, 0, b""))
            for h, addr, ref, kind in blk["entries"]:
                count += 1
                if ref == 0 and addr == 0 and kind == 0:
                    logged.setdefault(h, None)
                elif kind in (C.BLOCK_DATA, C.BLOCK_NODE) and self.log.valid_paddr(addr):
                    logged.setdefault(h, [addr, ref, kind])
                else:
                    problem(f"block {paddr}: bad entry {short(h)} (block {addr}, count {ref}, kind {kind})")
            paddr, digest = blk["prev_paddr"], blk["prev_hash"]
        if not self.bad_sys[C.OWNER_CALOG] and count != roots["calog_entries"]:
            self.problem("check_calog", f"CA log: checkpoint counts {roots['calog_entries']} entries, "
                         f"the chain holds {count}", "checkpoint")
        for h, e in logged.items():
            if e is None:
                self.ca.pop(h, None)
            else:
                self.ca[h] = e

    def _ca_rows(self, fixed):
        """Store the well-formed CA entries of a fixed-size leaf in bulk; return the other
        items, for _ca_items and _system_item to judge one by one."""
        keys = fixed.keys()
        if fixed.klen != C.HASH_SIZE or fixed.vlen != CA_ENTRY_SIZE:
            return zip(keys, fixed.vals())
        lg = self.log
        paddr, kind = fixed.u64(C.HASH_SIZE), fixed.column(C.HASH_SIZE + 12, 1).ravel()
        ref = np.ascontiguousarray(fixed.column(C.HASH_SIZE + 8, 4)).view("<u4").ravel()
        ok = (((kind == C.BLOCK_DATA) | (kind == C.BLOCK_NODE)) & (paddr >= lg.first)
              & (paddr < lg.first + lg.nsegs * lg.seg_blocks))
        entries = zip(paddr.tolist(), ref.tolist(), kind.tolist())
        if ok.all():
            self.ca.update(zip(keys, entries))
            return ()
        vals, rest = fixed.vals(), []
        for i, (e, good) in enumerate(zip(entries, ok.tolist())):
            if good:
                self.ca[keys[i]] = e
            else:
                rest.append((keys[i], vals[i]))
        return rest

    def _ca_items(self, items):
        """Store the well-formed CA entries; yield the others for _system_item to judge."""
        ca, lg = self.ca, self.log
        lo, hi = lg.first, lg.first + lg.nsegs * lg.seg_blocks
        for key, val in items:
            if len(key) == C.HASH_SIZE and len(val) == 16:
                paddr, ref, bkind = unpack_ca(val)
                if (bkind == C.BLOCK_DATA or bkind == C.BLOCK_NODE) and lo <= paddr < hi:
                    ca[bytes(key)] = [paddr, ref, bkind]
                    continue
            yield key, val

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
    def roots(self, empty=False):
        """root hash -> (root pointer, [snapshot names]) of the FS trees (empty ones too
        when asked: a tree without even a root directory)."""
        out = {}
        for name, e in sorted(self.snapshots.items()):
            if e["root"][0] or empty:
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
        self.reader.prefetch(e[0] for e in self.ca.values() if e[2] == C.BLOCK_NODE)
        for digest, (ptr, names) in self.roots().items():
            label = "tree " + ", ".join(n.decode(errors="replace") for n in names)
            def problem(msg, label=label):
                self.problem("check_fs_trees", f"{label}: {msg}", "salvage")

            self.tree_leaves[digest], self.tree_bad[digest] = walk_tree(
                self.reader, C.TREE_FS, ptr, seen=self.fs_nodes, locate=locate, visit=self._fs_visit,
                problem=problem)
        self._count_bulk_pointers()
        bad = sum(1 for i in self.fs_nodes.values() if isinstance(i, BadNode))
        self.note(f"{len(self.fs_nodes)} distinct FS tree nodes, {bad} unreadable")

    def _ref(self, digest, kind, n=1):
        self.refs[digest] = self.refs.get(digest, 0) + n
        have = self.ref_kind.setdefault(digest, kind)
        if have != kind:
            self._kind_clash(digest, have, kind)

    def _kind_clash(self, digest, have, kind):
        self.problem("check_pointers", f"block {short(digest)} is pointed at both as "
                     f"{KIND_NAMES[have]} and as {KIND_NAMES[kind]}", "salvage")

    def _fs_visit(self, ptr, info, first):
        """Count the pointers of each distinct FS node once (the hot loop of fsck)."""
        if not first:
            return
        self.progress.update()
        if isinstance(info, BadNode):
            return
        refs, kinds, ca = self.refs, self.ref_kind, self.ca
        if info.fixed is not None and block_map_rows(info.fixed):
            hashes = info.fixed.chunks(17 + 8, C.HASH_SIZE)      # a leaf of block maps: as arrays
            refs.update(hashes)
            self.bulk_pointers.append((hashes, info.fixed.u64(17).tolist()))
            return
        if info.level > 0:
            kind, pointers = C.BLOCK_NODE, info.vals
        else:
            kind, hints = C.BLOCK_DATA, self.data_hints
            pointers = [(int.from_bytes(v[:8], "little"), bytes(v[8:40])) for k, v in zip(info.keys, info.vals)
                        if len(k) > 8 and k[8] == C.ITEM_BLOCK and len(v) == 40]
        for paddr, digest in pointers:
            refs[digest] = refs.get(digest, 0) + 1
            have = kinds.setdefault(digest, kind)
            if have != kind:
                self._kind_clash(digest, have, kind)
            e = ca.get(digest)
            if e is not None and e[0] != paddr:
                self.stale_hints += 1
            if kind == C.BLOCK_DATA:
                hints.setdefault(digest, paddr)

    def _count_bulk_pointers(self):
        """Kinds and stale hints of the block-map leaves' pointers, by whole dicts (their
        paddr hints are looked up only when `locate` needs one)."""
        kinds, ca = self.ref_kind, self.ca
        found = {}
        for hashes, _paddrs in self.bulk_pointers:
            found.update(dict.fromkeys(hashes, C.BLOCK_DATA))
        for digest in [h for h, k in kinds.items() if k != C.BLOCK_DATA and h in found]:
            self._kind_clash(digest, kinds[digest], C.BLOCK_DATA)
        found.update(kinds)          # the kind seen first stays
        kinds.update(found)
        none = (None,)
        for hashes, paddrs in self.bulk_pointers:
            try:        # C-level maps; a hash missing from the index (damage) takes the slow way
                self.stale_hints += sum(map(ne, paddrs, map(_PADDR, map(ca.__getitem__, hashes))))
            except KeyError:
                self.stale_hints += sum(1 for h, p in zip(hashes, paddrs) if ca.get(h, none)[0] not in (None, p))

    # ---- pointers and reference counts ------------------------------------------------------------
    def check_pointers(self):
        log.info("Checking block pointers")
        ca, nodes = self.ca, self.fs_nodes
        for digest, kind in self.ref_kind.items():
            e = ca.get(digest)
            if e is not None and e[2] == kind:
                info = nodes.get(digest) if kind == C.BLOCK_NODE else None
                if info is None or isinstance(info, BadNode) or info.paddr == e[0]:
                    continue
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
        if paddr is None:
            paddr = next((p for hashes, paddrs in self.bulk_pointers for h, p in zip(hashes, paddrs)
                          if h == digest), None)
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
        refs, ca = self.refs, self.ca
        found = map(refs.get, ca.keys(), repeat(0))
        differ = compress(ca.items(), map(ne, found, map(_REFCOUNT, ca.values())))
        for digest, (paddr, ref, kind) in differ:       # in hash order: the CA tree's
            want = refs.get(digest, 0)
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
                self.problem("check_refcounts", f"{what}: refcount {ref}, found {want} references",
                             "refcount")
        if skipped:
            self.note(f"{skipped} refcounts above the references found not reported (unreadable nodes)")

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


