"""The cleaner: moves the live blocks out of sparse segments so whole segments come free.

Content-addressed blocks (data, FS nodes) move without touching their parents: the CA
entry gets the new location and the parents' paddr hints go stale (reads fall back to the
CA index).  System tree nodes are found by walking their trees and rewritten copy-on-write
at the next commit."""
from .errors import CorruptError
from .format import constants as C
from .format.items import unpack_ca
from .format.segment import decode_summary


def choose_victims(log, limit, max_utilisation=0.8):
    """Cost-benefit (LFS): prefer segments that are empty and old: (1-u)*age/(1+u)."""
    full = (log.state == C.SEG_FULL) & (log.pinned == 0)
    full[log.head_seg] = False
    u = log.live / float(log.seg_blocks)
    age = (log.next_unit_seq - log.alloc_seq).astype(float)
    score = (1 - u) * age / (1 + u)
    score[~full | (u > max_utilisation)] = -1
    order = score.argsort()[::-1]
    return [int(s) for s in order[:limit] if score[s] >= 0]


def log_units(store, log, segno):
    """(first payload paddr, entries) of each valid log unit of one segment, in order."""
    start = log.seg_start(segno)
    off = 0
    while off < log.seg_blocks - 1:
        if segno == log.head_seg and off >= log.head_off:
            return
        try:
            unit = decode_summary(store.read_raw(start + off))
        except CorruptError:
            return
        if unit["unit_seq"] < log.alloc_seq[segno] or unit["segment"] != segno:
            return
        yield start + off + 1, unit["entries"]
        off += 1 + len(unit["entries"])


def clean(engine, limit=4):
    """Relocate the live blocks of up to `limit` victim segments; returns the victims."""
    log, store = engine.log, engine.store
    victims = choose_victims(log, limit)
    if not victims:
        return []
    where = {}                         # paddr -> (kind, owner, hash prefix) of victim blocks
    for segno in victims:
        for base, entries in log_units(store, log, segno):
            for i, entry in enumerate(entries):
                where[base + i] = entry
    moved = _move_content(engine, where)
    if any(paddr in where for paddr in engine.ca.chain):
        engine.ca.force_merge = True       # the merge at this commit frees the chain blocks
    sys_paddrs = {p for p, (kind, _o, _h) in where.items() if kind == C.BLOCK_SYSNODE}
    trees = {C.TREE_CA: engine.ca_tree, C.TREE_SNAP: engine.snaps, C.TREE_REMAP: engine.remap}
    for tree in trees.values():
        hits = [(keys[0], level) for ptr, level, keys, _v in list(tree.walk_nodes()) if ptr[0] in sys_paddrs]
        for key, level in hits:
            tree.touch(key, level)
    engine.stats_cleaned = getattr(engine, "stats_cleaned", 0) + moved
    return victims


def _move_content(engine, where):
    """Copy each live content-addressed block in `where` to the log head."""
    log, store, ca = engine.log, engine.store, engine.ca
    live = {e[0]: h for h, e in ca.delta.items() if e is not None and e[0] in where}
    for h, e in ca.logged.items():
        if e is not None and e[0] in where and h not in ca.delta:
            live.setdefault(e[0], h)
    for paddr, (kind, _owner, prefix) in where.items():
        if kind == C.BLOCK_SYSNODE or paddr in live:
            continue
        for key, val in ca.tree.scan(prefix, _next_prefix(prefix)):
            if key not in ca.delta and key not in ca.logged and unpack_ca(val)[0] == paddr:
                live[paddr] = bytes(key)
    for paddr in sorted(live):
        kind, owner, _prefix = where[paddr]
        h = live[paddr]
        new = log.append(kind, owner, h, store.read_raw(paddr), reserve_ok=True)
        ca.relocate(h, new)
        log.add_live(paddr, -1)
    return len(live)


def _next_prefix(prefix):
    n = int.from_bytes(prefix, "big") + 1
    return n.to_bytes(len(prefix), "big") if n < 1 << (8 * len(prefix)) else None
