"""Issue 3 benchmark: import the blocks of the corpus rootfs trees into ctrfs, in process,
side by side with `tar -x` onto ext4 on a loop file in the same run.

Reports MB/s (file data bytes / seconds, MB = 10^6) and bytes on disk:
- import: walk rootfs/X, write every file through the FS layer, commit an image;
- store only: the same file data already in memory, hashed and stored block by block
  (BlockStore.put_data) plus the commit: the engine's own hashing + storing rate;
- A+B+C as three images on one device: what content addressing saves.
Usage: .venv/bin/python bench/engine_import.py [--trees A,B,C] [--runs N] [--json FILE]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import peers  # noqa: E402

from ctrfs.device import Device  # noqa: E402
from ctrfs.filesystem import FileSystem, init_tree  # noqa: E402
from ctrfs.importdir import import_directory  # noqa: E402
from ctrfs.mkfs.geometry import make_filesystem  # noqa: E402

IMAGE_SIZE = 8 << 30


def fresh_device(work, name):
    path = os.path.join(B.cache_dir(work, "ctrfs"), f"{name}.img")
    if os.path.exists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.truncate(IMAGE_SIZE)
    return path


def bytes_on_disk(engine):
    return int(engine.log.live.sum() + engine.log.pinned.sum()) * engine.block_size


def import_trees(work, trees, device_name):
    """Import each tree as an image on one device; returns per-tree figures."""
    path = fresh_device(work, device_name)
    engine = make_filesystem(Device(path))
    out = {}
    for tree in trees:
        name = b"@import-" + tree.encode()
        engine.create_tree(name)
        init_tree(engine.tree(name))
        fs = FileSystem(engine, name)
        t0 = time.perf_counter()
        files, nbytes = import_directory(fs, B.corpus_paths(work)["rootfs"][tree])
        fs.commit(image=tree.lower().encode())
        dt = time.perf_counter() - t0
        out[tree] = dict(files=files, file_bytes=nbytes, seconds=round(dt, 3),
                         mb_per_s=round(B.mb_per_s(nbytes, dt), 1), bytes_on_disk_after=bytes_on_disk(engine),
                         stats=dict(engine.store.stats))
    engine.close()
    return out


def read_all_files(root):
    blobs = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    blobs.append(fh.read())
    return blobs


def store_only(work, tree):
    """Hash + store every full block of the tree's file data (already in memory)."""
    blobs = read_all_files(B.corpus_paths(work)["rootfs"][tree])
    path = fresh_device(work, "store-only")
    engine = make_filesystem(Device(path))
    bs = engine.block_size
    total = sum(len(b) for b in blobs)
    put = engine.store.put_data
    t0 = time.perf_counter()
    for blob in blobs:
        mv = memoryview(blob)
        for off in range(0, len(blob), bs):
            blk = mv[off:off + bs]
            put(blk if len(blk) == bs else bytes(blk).ljust(bs, b"\0"))
    engine.commit()
    dt = time.perf_counter() - t0
    res = dict(file_bytes=total, seconds=round(dt, 3), mb_per_s=round(B.mb_per_s(total, dt), 1),
               blocks=engine.store.stats["data_written"], deduped=engine.store.stats["data_deduped"])
    engine.close()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", default="A,B,C")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results-engine.json"))
    ap.add_argument("--work")
    args = ap.parse_args(argv)
    trees = args.trees.split(",")
    if not B.corpus_complete(args.work) and not all(os.path.isdir(B.corpus_paths(args.work)["rootfs"][t]) for t in trees):
        print("corpus missing: run bench/corpus.py first", file=sys.stderr)
        return 1
    results = dict(peers={}, ctrfs_single={}, ctrfs_combined={}, store_only={})
    for t in trees:
        results["peers"][t] = peers.tar_extract_ext4(B.corpus_paths(args.work)["tars"][t], runs=args.runs, work=args.work)
        results["ctrfs_single"][t] = import_trees(args.work, [t], f"single-{t}")[t]
    results["ctrfs_combined"] = import_trees(args.work, trees, "combined")
    results["store_only"][trees[-1]] = store_only(args.work, trees[-1])
    print(f"{'tree':4} {'tar->ext4 MB/s':>15} {'ctrfs import MB/s':>18} {'ratio':>6} "
          f"{'ext4 used MB':>13} {'ctrfs MB':>9}")
    for t in trees:
        p, c = results["peers"][t], results["ctrfs_single"][t]
        print(f"{t:4} {p['mb_per_s']:>15} {c['mb_per_s']:>18} {c['mb_per_s'] / p['mb_per_s']:>6.2f} "
              f"{p['bytes_used'] / B.MB:>13.1f} {c['bytes_on_disk_after'] / B.MB:>9.1f}")
    last = results["ctrfs_combined"][trees[-1]]
    ext4_sum = sum(results["peers"][t]["bytes_used"] for t in trees)
    print(f"{'+'.join(trees)} on one ctrfs device: {last['bytes_on_disk_after'] / B.MB:.1f} MB "
          f"(ext4 images summed: {ext4_sum / B.MB:.1f} MB)")
    so = results["store_only"][trees[-1]]
    print(f"store only ({trees[-1]}, data in memory): {so['mb_per_s']} MB/s over {so['file_bytes'] / B.MB:.1f} MB")
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
