"""The daemon's memory against its cache= budget: RSS of the daemon sampled every 0.1 s
while a workload runs on a writable mount, for each cache= size asked for.

    sudo python3 bench/memory.py [--work CORPUS] [--scratch DIR] [--cache 64M,256M]
                                 [--write-gib 10] [--stress-seconds 60]

Workloads, each on a fresh device and mount:
  stress   a seeded random mix on 4,000 paths in 40 directories: create, write at random
           offsets (up to 4 MiB), truncate, append, rename, hardlink, symlink, unlink,
           mkdir/rmdir, chmod, utimes, setxattr, read back (an fsstress-like load:
           Debian packages no fsstress)
  write    one file of --write-gib GiB of incompressible, non-repeating data, written
           with 1 MiB writes (dd from a 64 MiB random pattern, each MiB made unique)
  views    8 containers at once (clones of one image), 256 MiB of unique data written
           into each in parallel
  tree     tar -x of tree C into the mount, then tar -cf /dev/null of it (reads every file
           and walks every leaf: the node cache fills)
Per (cache, workload): RSS right after the mount, the peak, and peak - cache (the
margin).  JSON on stdout (also bench/results-memory.json), a table on stderr."""
import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import ctrfs_bench as CB  # noqa: E402

PATTERN = 64 << 20
MIB = 1 << 20


def daemon_pid(mnt):
    """The pid the daemon recorded for umount(8) (/run/ctrfs/mounts/MAJ:MIN)."""
    st = os.stat(mnt)
    path = f"/run/ctrfs/mounts/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    with open(path) as f:
        return int(f.read().split()[0])


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Sampler:
    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def stress(mnt, seconds, seed=1):
    """A seeded random mix of namespace and data operations for `seconds`."""
    rnd = random.Random(seed)
    dirs = [os.path.join(mnt, f"d{k}") for k in range(40)]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    paths = [os.path.join(rnd.choice(dirs), f"f{k}") for k in range(4000)]
    noise = os.urandom(8 * MIB)
    ops = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        p = rnd.choice(paths)
        op = rnd.random()
        try:
            if op < 0.35:
                off = rnd.randrange(0, 4 * MIB)
                n = rnd.choice((512, 4096, 65536, MIB))
                start = rnd.randrange(0, len(noise) - n)
                with open(p, "r+b" if os.path.exists(p) else "wb") as f:
                    f.seek(off)
                    f.write(noise[start:start + n])
            elif op < 0.45:
                with open(p, "ab") as f:
                    f.write(noise[:rnd.randrange(1, 200000)])
            elif op < 0.52:
                os.truncate(p, rnd.randrange(0, 2 * MIB))
            elif op < 0.60:
                os.rename(p, rnd.choice(paths))
            elif op < 0.65:
                os.link(p, rnd.choice(paths) + ".l")
            elif op < 0.69:
                os.symlink(rnd.choice(paths), rnd.choice(paths) + ".s")
            elif op < 0.77:
                os.unlink(p)
            elif op < 0.80:
                d = os.path.join(rnd.choice(dirs), f"sub{rnd.randrange(50)}")
                os.mkdir(d) if rnd.random() < 0.6 else os.rmdir(d)
            elif op < 0.85:
                os.chmod(p, rnd.choice((0o644, 0o755, 0o600)))
                os.utime(p, (rnd.randrange(1 << 31), rnd.randrange(1 << 31)))
            elif op < 0.90:
                os.setxattr(p, f"user.k{rnd.randrange(8)}", noise[:rnd.randrange(1, 2000)])
            else:
                with open(p, "rb") as f:
                    while f.read(MIB):
                        pass
        except OSError:
            pass           # a missing path, an existing name, a non-empty dir: part of the mix
        ops += 1
    B.run(["sync", "-f", mnt])
    return {"ops": ops}


def big_write(mnt, gib):
    pattern = bytearray(os.urandom(PATTERN))
    with open(os.path.join(mnt, "big.bin"), "wb", buffering=0) as f:
        for k in range(gib * 1024):
            at = (k * MIB) % PATTERN
            chunk = memoryview(pattern)[at:at + MIB]
            chunk[:8] = k.to_bytes(8, "little")      # every MiB (and 4 KiB block 0) unique
            f.write(chunk)
    B.run(["sync", "-f", mnt])
    return {"bytes": gib << 30}


def views(mnt, dev, work, n=8, mib=256):
    """n containers at once: clones of an image, each written mib MiB of unique data in
    parallel (the daemon's dirty budget is shared by its trees)."""
    with open(os.path.join(mnt, "base.txt"), "w") as f:
        f.write("base\n")
    CB.commit(mnt, "base")
    pattern = os.urandom(PATTERN)

    def fill(where, seed):
        with open(os.path.join(where, "data.bin"), "wb", buffering=0) as f:
            for k in range(mib):
                at = (k * MIB) % PATTERN
                chunk = bytearray(pattern[at:at + MIB])
                chunk[:16] = seed.to_bytes(8, "little") + k.to_bytes(8, "little")
                f.write(chunk)
        B.run(["sync", "-f", where])

    with contextlib.ExitStack() as stack:
        mnts = []
        for k in range(n):
            m = stack.enter_context(B.mountpoint(work, "ctrfs"))
            CB.mount(dev, m, image="base", opts=f"clone=m{k}")
            stack.callback(B.umount, m)
            mnts.append(m)
        threads = [threading.Thread(target=fill, args=(m, k)) for k, m in enumerate(mnts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return {"trees": n, "bytes": n * mib * MIB}


def tree(mnt, tar_path):
    B.run(["tar", "-xpf", tar_path, "-C", mnt, "--numeric-owner"])
    B.run(["sync", "-f", mnt])
    B.run(["tar", "-cf", "/dev/null", "-C", mnt, "."])
    return {}


def one(scratch, work, cache, name, fn):
    dev = os.path.join(scratch, "mem.img")
    CB.mkfs(dev, "24G")
    with B.mountpoint(work, "ctrfs") as mnt:
        CB.mount(dev, mnt, opts=f"cache={cache}")
        try:
            pid = daemon_pid(mnt)
            base = rss(pid)
            t0 = time.perf_counter()
            with Sampler(pid) as s:
                info = fn(mnt, dev)
            secs = time.perf_counter() - t0
        finally:
            CB.umount(mnt, dev)
    os.unlink(dev)
    cache_bytes = parse_size(cache)
    return dict(cache=cache, workload=name, seconds=round(secs, 1), rss_after_mount=base,
                rss_peak=s.peak, margin=s.peak - cache_bytes, **info)


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * units[s[-1].upper()] if s[-1].upper() in units else int(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="corpus dir (default $CTRFS_CORPUS, $WORK or /var/tmp/ctrfs-corpus)")
    ap.add_argument("--scratch", help="where the devices live (default: a fresh dir under /var/tmp)")
    ap.add_argument("--cache", default="64M,256M")
    ap.add_argument("--write-gib", type=int, default=10)
    ap.add_argument("--stress-seconds", type=float, default=60)
    ap.add_argument("--only", help="comma list of workloads (stress,write,views,tree)")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results-memory.json"))
    args = ap.parse_args()
    paths = B.corpus_paths(args.work)
    scratch = args.scratch or tempfile.mkdtemp(prefix="ctrfs-memory-", dir="/var/tmp")
    workloads = {"stress": lambda m, _d: stress(m, args.stress_seconds),
                 "write": lambda m, _d: big_write(m, args.write_gib),
                 "tree": lambda m, _d: tree(m, paths["tars"]["C"]),
                 "views": lambda m, d: views(m, d, args.work)}
    only = args.only.split(",") if args.only else list(workloads)
    rows = []
    try:
        for cache in args.cache.split(","):
            for name in only:
                row = one(scratch, args.work, cache, name, workloads[name])
                rows.append(row)
                print(f"cache={row['cache']:>5} {name:7} {row['seconds']:7.1f} s  after mount "
                      f"{row['rss_after_mount'] / MIB:6.1f} MiB  peak {row['rss_peak'] / MIB:6.1f} MiB  "
                      f"peak - cache {row['margin'] / MIB:+7.1f} MiB", file=sys.stderr, flush=True)
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    out = {"rows": rows, "machine": {"loadavg": os.getloadavg()}}
    B.save_json(args.json, out)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
