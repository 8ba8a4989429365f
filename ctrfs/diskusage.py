"""`ctrfs df`: where a device's bytes go.  Logical bytes (what the images' files add up to)
against physical ones (the data blocks stored once), the dedup ratio, and per image and
tree the bytes only it holds and the bytes it shares with others, as `docker system df -v`
and `btrfs filesystem du` show them.

Each tree is read once, item by item; a subtree shared by several trees is read again for
each (the figures need per-tree block sets).  Snapshots the catalogue hides (layers below
an image) hold no blocks of their own that their image does not, so they are left out of
the shared/unique split unless asked for."""
from .format import constants as C
from .format.items import INODE_SIZE, key_type
from .tree import Tree


def tree_usage(engine, root):
    """(set of data block hashes, inline bytes) of one FS tree."""
    hashes, inline = set(), 0
    if not root[0]:
        return hashes, inline
    for key, val in Tree(engine.store, C.TREE_FS, root).scan():
        kind = key_type(key)
        if kind == C.ITEM_BLOCK:
            hashes.add(bytes(val[8:40]))
        elif kind == C.ITEM_INODE:
            inline += max(0, len(val) - INODE_SIZE)
    return hashes, inline


def stored_data_blocks(engine):
    """Data blocks in the content index: every block the device holds for file data."""
    return sum(1 for _h, raw in engine.ca.scan() if raw[12] == C.BLOCK_DATA)


def report(engine, names, *, hidden=lambda name: False, logical=lambda name, e: e["logical_bytes"]):
    """{device: {...}, trees: [{name, kind, logical, referenced, unique, shared}]} for the
    snapshots `names` [(name, entry)]; `hidden` ones count for the device, not in the split."""
    bs = engine.block_size
    sets, rows = {}, []
    for name, e in names:
        if hidden(name):
            continue
        root_hash = e["root"][1]
        if root_hash not in sets:
            sets[root_hash] = tree_usage(engine, e["root"])
        rows.append((name, e, root_hash))
    holders = {}                        # data hash -> number of distinct trees (by root) holding it
    for hashes, _inline in sets.values():
        for h in hashes:
            holders[h] = holders.get(h, 0) + 1
    trees = []
    for name, e, root_hash in rows:
        hashes, inline = sets[root_hash]
        twins = sum(1 for _n, _e, r in rows if r == root_hash) > 1
        unique = 0 if twins else sum(1 for h in hashes if holders[h] == 1)
        trees.append(dict(name=name, kind="image" if e["kind"] == C.SNAP_IMAGE else "writable",
                          root=root_hash.hex(), logical=logical(name, e), inline=inline,
                          referenced=len(hashes) * bs, unique=unique * bs,
                          shared=(len(hashes) - unique) * bs))
    log = engine.log
    data = stored_data_blocks(engine) * bs
    total = log.nsegs * log.seg_blocks * bs
    free = int(len(log.reusable())) * log.seg_blocks * bs
    logical_sum = sum(t["logical"] for t in trees)
    device = dict(size=total, used=total - free, free=free, data=data,
                  metadata=max(0, total - free - data), logical=logical_sum,
                  dedup_ratio=round(logical_sum / data, 3) if data else None)
    return dict(device=device, trees=trees)
