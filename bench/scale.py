"""Costs that must not grow with the device: tree C as 1 image on one device and as 8
images (imported under 8 names) on another, then an empty 2 GiB device against an empty
512 GiB one (sparse files: 2k against 512k segments).

    sudo python3 bench/scale.py [--work CORPUS] [--scratch DIR] [--runs N] [--images N]

Per device: `ctrfs images DEV` (open + list), the mount of image c read-only (mount.ctrfs
until it returns mounted), the mount of its writable clone (of @default on the empty
devices), a small commit (one 4 KiB file written there, then `ctrfs commit MNT`), the
umount after it, and `fsck.ctrfs -f -n` (which does grow with the data: it reads it all).
The two devices of a pair take turns within each run, so a busy machine weighs on both
alike.  Wall seconds of whole processes, medians of --runs; JSON on stdout, tables on
stderr.  The devices live in --scratch (default: a fresh dir under /var/tmp), never in
the corpus."""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import ctrfs_bench as CB  # noqa: E402

DEVICE_SIZE = "8G"       # sparse; room for 8 imports without dedup in the way of the log


def timed(cmd):
    return B.timed([CB._tool(cmd[0]), *cmd[1:]])


def mount_time(dev, mnt, opts):
    t0 = time.perf_counter()
    B.run([CB._tool("mount.ctrfs"), dev, mnt, "-o", opts], timeout=300)
    B.wait_mounted(mnt)
    return time.perf_counter() - t0


def umount_time(dev, mnt):
    t0 = time.perf_counter()
    CB.umount(mnt, dev)
    return time.perf_counter() - t0


def one_round(dev, mnt, image, tag):
    """One sample of each workload on dev; image=None works on @default (no ro mount)."""
    out = {"images": timed(["ctrfs", "images", dev])}
    if image:
        out["mount_ro"] = mount_time(dev, mnt, f"image={image},ro")
        CB.umount(mnt, dev)
    out["mount_rw"] = mount_time(dev, mnt, f"image={image}" if image else "rw")
    with open(os.path.join(mnt, f"small-{tag}"), "wb") as f:
        f.write(os.urandom(4096))
    out["small_commit"] = timed(["ctrfs", "commit", mnt, f"small:{tag}"])
    out["umount_rw"] = umount_time(dev, mnt)
    if image:
        out["fsck"] = timed(["fsck.ctrfs", "-f", "-n", dev])
    return out


def compare(devs, scratch, runs, image):
    """Medians per device; the devices take turns within each run, so a busy machine
    weighs on both alike."""
    samples = {label: {} for label in devs}
    mnt = tempfile.mkdtemp(prefix="mnt-", dir=scratch)
    try:
        for i in range(runs):
            for j, (label, dev) in enumerate(devs.items()):
                for k, v in one_round(dev, mnt, image, f"r{i}-d{j}").items():
                    samples[label].setdefault(k, []).append(v)
    finally:
        B.umount(mnt)
        os.rmdir(mnt)
    return {label: {k: round(statistics.median(v), 4) for k, v in s.items()} for label, s in samples.items()}


def table(results):
    (la, a), (lb, b) = results.items()
    print(f"{'workload':14s} {la:>10s} {lb:>10s}  ratio", file=sys.stderr)
    for k in a:
        print(f"{k:14s} {a[k]:9.3f}s {b[k]:9.3f}s  {b[k] / a[k]:5.2f}", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="the corpus dir (bench/README.md)")
    ap.add_argument("--scratch", help="where the devices are made (default: a new dir under /var/tmp)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--images", type=int, default=8)
    args = ap.parse_args(argv)
    tar = B.corpus_paths(args.work)["tars"]["C"]
    scratch = args.scratch or tempfile.mkdtemp(prefix="ctrfs-scale-", dir="/var/tmp")
    os.makedirs(scratch, exist_ok=True)
    one, many = os.path.join(scratch, "one.img"), os.path.join(scratch, "many.img")
    small, huge = os.path.join(scratch, "2g.img"), os.path.join(scratch, "512g.img")
    ctrfs = CB._tool("ctrfs")
    try:
        for dev in (one, many):
            CB.mkfs(dev, DEVICE_SIZE)
            B.run([ctrfs, "import", dev, tar, "--name", "c", "-q"], timeout=1800)
        for n in range(2, args.images + 1):
            B.run([ctrfs, "import", many, tar, "--name", f"c{n}", "-q"], timeout=1800)
        CB.mkfs(small, "2G")
        CB.mkfs(huge, "512G")
        images = compare({"1 image": one, f"{args.images} images": many}, scratch, args.runs, "c")
        sizes = compare({"2 GiB": small, "512 GiB": huge}, scratch, args.runs, None)
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    table(images)
    table(sizes)
    json.dump(dict(tree="C", device_size=DEVICE_SIZE, runs=args.runs, images=images, empty_devices=sizes),
              sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
