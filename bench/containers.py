"""Many containers on one device (issue "one device, many containers"): ctrfs's one daemon
per device against one kernel overlay or one fuse-overlayfs process per container.

    sudo python3 bench/containers.py [--work DIR] [--trees 50] [--runs 5] [--json FILE]

1. start: with N containers already served, `mount.ctrfs DEV DIR -o image=a,clone=ID` of a
   new clone until the first stat of /etc/passwd answers; vs `mount -t overlay` over
   rootfs/A unpacked on ext4 (the podman default), vs starting `fuse-overlayfs` over it.
2. memory: the daemon's RSS with 1 tree and with N+1 trees -> per additional tree; vs one
   fuse-overlayfs process's RSS (one per container).
3. readers: 8 fresh clones read (every file of /usr, through the daemon: fresh views
   have no page cache) with and without a concurrent `ctrfs import` of image C.  Also the
   longest single stat() of a prober thread during each phase.

Image A is the corpus OCI layout's tag A, C its tag C (which adds B's and C's layers).
Whole processes timed from outside, medians of --runs (bench/README.md "Method")."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from ctrfs_bench import tool  # noqa: E402

READERS = 8


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def daemon_pid(mnt):
    from ctrfs.unmount import RECORDS, find_mount
    with open(os.path.join(RECORDS, find_mount(os.path.realpath(mnt)))) as f:
        return int(f.read().split()[0])


def mount_clone(dev, mnt, clone, extra=()):
    os.makedirs(mnt, exist_ok=True)
    B.run([tool("mount.ctrfs"), dev, mnt, "-o", ",".join([f"image=a:1,clone={clone}", *extra])])


def umount_view(mnt):
    B.run([tool("umount.fuse.ctrfs"), os.path.realpath(mnt)])


def start_ctrfs(dev, mnt, clone):
    t0 = time.perf_counter()
    mount_clone(dev, mnt, clone)
    os.stat(os.path.join(mnt, "etc/passwd"))
    return time.perf_counter() - t0


def start_overlay(lower, top, k):
    up, wk, mnt = (os.path.join(top, f"{x}{k}") for x in ("up", "wk", "mnt"))
    for d in (up, wk, mnt):
        os.makedirs(d, exist_ok=True)
    t0 = time.perf_counter()
    B.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={up},workdir={wk}", mnt])
    os.stat(os.path.join(mnt, "etc/passwd"))
    dt = time.perf_counter() - t0
    B.run(["umount", mnt])
    return dt


def start_fuse_overlayfs(lower, top, k, keep=False):
    up, wk, mnt = (os.path.join(top, f"f{x}{k}") for x in ("up", "wk", "mnt"))
    for d in (up, wk, mnt):
        os.makedirs(d, exist_ok=True)
    t0 = time.perf_counter()
    B.run(["fuse-overlayfs", "-o", f"lowerdir={lower},upperdir={up},workdir={wk}", mnt])
    os.stat(os.path.join(mnt, "etc/passwd"))
    dt = time.perf_counter() - t0
    pid = int(B.run(["pgrep", "-n", "-x", "fuse-overlayfs"], capture=True).split()[0])
    rss = rss_kib(pid)
    if not keep:
        B.run(["fusermount3", "-u", mnt])
    return dt, rss


def read_tree(top):
    """Bytes of every regular file under top, read."""
    n = 0
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "rb") as f:
                        while chunk := f.read(1 << 20):
                            n += len(chunk)
            except OSError:
                pass
    return n


def readers(mnts):
    """8 reader processes at once (one per clone); (total bytes, wall seconds)."""
    code = ("import sys; sys.path.insert(0, %r); from containers import read_tree; "
            "print(read_tree(sys.argv[1]))") % os.path.dirname(os.path.abspath(__file__))
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code, os.path.join(m, "usr")],
                              stdout=subprocess.PIPE, text=True) for m in mnts]
    total = sum(int(p.communicate()[0]) for p in procs)
    return total, time.perf_counter() - t0


class Prober(threading.Thread):
    """stat() of files not yet looked up, one every 5 ms: the longest answer."""

    def __init__(self, top):
        super().__init__(daemon=True)
        self.paths = [os.path.join(dp, f) for dp, _d, fs in os.walk(top) for f in fs][:20000]
        self.worst = 0.0
        self.stop = threading.Event()

    def run(self):
        for p in self.paths:
            if self.stop.is_set():
                return
            t0 = time.perf_counter()
            try:
                os.lstat(p)
            except OSError:
                pass
            self.worst = max(self.worst, time.perf_counter() - t0)
            time.sleep(0.005)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--work")
    ap.add_argument("--trees", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json")
    opts = ap.parse_args(argv)
    paths = B.corpus_paths(opts.work)
    B.need_tools("fuse-overlayfs", "fusermount3")
    top = B.cache_dir(opts.work, "bench", "containers")
    B.run(["rm", "-rf", top])
    os.makedirs(top)
    dev = os.path.join(top, "dev.img")
    B.run([tool("mkfs.ctrfs"), "-q", "-s", "3G", dev])
    B.run([tool("ctrfs"), "import", dev, f"oci:{paths['oci']}:A", "--name", "a:1", "-q"])
    lower = paths["rootfs"]["A"]
    res = {"trees": opts.trees, "loadavg_before": os.getloadavg()}
    mnts = []
    try:
        first = os.path.join(top, "v0")
        mount_clone(dev, first, "v0", ["commit=60"])
        mnts.append(first)
        os.stat(os.path.join(first, "etc/passwd"))
        pid = daemon_pid(first)
        rss1 = rss_kib(pid)
        for k in range(1, opts.trees + 1):
            m = os.path.join(top, f"v{k}")
            mount_clone(dev, m, f"v{k}")
            os.stat(os.path.join(m, "etc/passwd"))
            mnts.append(m)
        rss_n = rss_kib(pid)
        res["rss_kib"] = dict(one_tree=rss1, trees=rss_n,
                              per_tree=round((rss_n - rss1) / opts.trees, 1))
        # 1. starting one more container, N served
        ct, ov, fo, fo_rss = [], [], [], []
        for r in range(opts.runs):
            m = os.path.join(top, f"s{r}")
            ct.append(start_ctrfs(dev, m, f"s{r}"))
            umount_view(m)
            ov.append(start_overlay(lower, top, r))
            dt, rss = start_fuse_overlayfs(lower, top, r)
            fo.append(dt)
            fo_rss.append(rss)
        res["start_s"] = dict(ctrfs=B.summarize(ct), overlay=B.summarize(ov),
                              fuse_overlayfs=B.summarize(fo))
        res["fuse_overlayfs_rss_kib"] = statistics.median(fo_rss)
        # 3. readers with and without an import of C
        fresh = []
        for k in range(2 * READERS):
            m = os.path.join(top, f"r{k}")
            mount_clone(dev, m, f"r{k}")
            fresh.append(m)
            mnts.append(m)
        probe = Prober(os.path.join(fresh[0], "usr", "share"))
        probe.start()
        nbytes, secs = readers(fresh[:READERS])
        probe.stop.set()
        probe.join()
        res["readers_alone"] = dict(bytes=nbytes, seconds=round(secs, 3),
                                    mb_s=round(B.mb_per_s(nbytes, secs), 1),
                                    worst_stat_ms=round(probe.worst * 1000, 1))
        imp = subprocess.Popen([tool("ctrfs"), "import", dev, f"oci:{paths['oci']}:C", "--name", "c:1", "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        t_imp = time.perf_counter()
        time.sleep(1.0)                        # into the layers
        probe = Prober(os.path.join(fresh[READERS], "usr", "share"))
        probe.start()
        nbytes, secs = readers(fresh[READERS:])
        during = imp.poll() is None
        probe.stop.set()
        probe.join()
        err = imp.communicate()[1]
        if imp.returncode != 0:
            raise RuntimeError(f"ctrfs import of C failed: {err.strip()}")
        res["import_c_s"] = round(time.perf_counter() - t_imp, 2)
        res["readers_during_import"] = dict(bytes=nbytes, seconds=round(secs, 3),
                                            mb_s=round(B.mb_per_s(nbytes, secs), 1),
                                            worst_stat_ms=round(probe.worst * 1000, 1),
                                            import_still_running_at_end=during)
    finally:
        for m in reversed(mnts):
            if os.path.ismount(m):
                try:
                    umount_view(m)
                except RuntimeError as exc:
                    print(f"cleanup: {exc}", file=sys.stderr)
    res["loadavg_after"] = os.getloadavg()
    print(json.dumps(res, indent=2))
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
