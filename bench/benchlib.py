"""Helpers shared by the peer and ctrfs benchmarks: running and timing whole processes,
cache control, loop and FUSE mounts, corpus paths.

Every figure is the wall time of whole processes, measured from outside (bench/README.md,
"Method"), so the peers and ctrfs are timed the same way.  Stdlib only.
"""
import contextlib
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

DEFAULT_WORK = "/var/tmp/ctrfs-corpus"
MB = 10 ** 6          # README "Method": MB = 10^6 bytes
GiB = 1 << 30


# ---- corpus layout ------------------------------------------------------------------------
def work_dir(work=None):
    """The corpus dir: the argument, else $CTRFS_CORPUS, else $WORK, else /var/tmp/ctrfs-corpus."""
    return os.path.abspath(work or os.environ.get("CTRFS_CORPUS") or os.environ.get("WORK")
                           or DEFAULT_WORK)


def corpus_paths(work=None):
    w = work_dir(work)
    return dict(
        work=w,
        rootfs={n: os.path.join(w, "rootfs", n) for n in "ABC"},
        tars={n: os.path.join(w, "tars", f"{n}.tar") for n in "ABC"},
        oci=os.path.join(w, "oci"),
        big_dir=os.path.join(w, "big"),
        big_file=os.path.join(w, "big", "big.bin"),
        stats=os.path.join(w, "corpus-stats.txt"),
    )


def corpus_complete(work=None):
    """True when bench/corpus.py finished: every step's .done marker and the stats file exist."""
    p = corpus_paths(work)
    w = p["work"]
    markers = [os.path.join(w, "rootfs", f"{n}.done") for n in "ABC"]
    markers += [p["tars"][n] + ".done" for n in "ABC"]
    markers += [os.path.join(w, "oci.done"), p["big_file"] + ".done", p["stats"]]
    return all(os.path.exists(m) for m in markers)


def cache_dir(work, *parts):
    """A dir under the corpus WORK dir for images built by the benchmarks (kept across runs)."""
    d = os.path.join(work_dir(work), *parts)
    os.makedirs(d, exist_ok=True)
    return d


# ---- processes ------------------------------------------------------------------------------
def run_benches(calls, order, only=None, log=print, label=""):
    """Run the named benchmark callables in `order`; a failure is recorded as
    {"error": ...} and the others still run."""
    out = {}
    for name in order:
        if only and name not in only:
            continue
        log(f"{label} {name} ...")
        t0 = time.perf_counter()
        try:
            out[name] = calls[name]()
        except Exception as exc:   # report it, keep measuring the others
            out[name] = dict(error=f"{type(exc).__name__}: {exc}")
        log(f"{label} {name}: {time.perf_counter() - t0:.1f} s")
    return out


def run(cmd, check=True, capture=False, **kw):
    """Run a command; with capture=True return its stdout as text.  A failure raises
    RuntimeError with the command and its stderr (one clear line, not a bare CalledProcessError)."""
    res = subprocess.run(cmd, text=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                         stderr=subprocess.PIPE, **kw)
    if check and res.returncode != 0:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        raise RuntimeError(f"`{shown}` exited {res.returncode}: {res.stderr.strip()[-2000:]}")
    return res.stdout if capture else res


def timed(cmd, check=True, **kw):
    """Wall seconds of one whole process (start to exit)."""
    t0 = time.perf_counter()
    run(cmd, check=check, **kw)
    return time.perf_counter() - t0


def timed_capture(cmd, **kw):
    """(wall seconds, stdout) of one whole process."""
    t0 = time.perf_counter()
    out = run(cmd, capture=True, **kw)
    return time.perf_counter() - t0, out


def need_tools(*names):
    missing = [n for n in names if not which(n)]
    if missing:
        raise RuntimeError("missing tools: " + ", ".join(missing) +
                           " (Debian: squashfuse squashfs-tools fuse-overlayfs e2fsprogs coreutils tar)")


def which(name):
    """shutil.which, also looking in /sbin and /usr/sbin (mount(8) helpers live there)."""
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    return shutil.which(name, path=path)


# ---- figures --------------------------------------------------------------------------------
def summarize(samples, scale=1.0, digits=4):
    """median/min/max of a list of samples (multiplied by scale), plus the samples themselves."""
    vals = [s * scale for s in samples]
    return dict(median=round(statistics.median(vals), digits), min=round(min(vals), digits),
                max=round(max(vals), digits), n=len(vals), samples=[round(v, digits) for v in vals])


def mb_per_s(nbytes, seconds):
    return nbytes / MB / seconds


# ---- caches ---------------------------------------------------------------------------------
def drop_caches():
    """Drop the clean page cache, dentries and inodes (README's *cold*)."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def warm(path, bs=1 << 20):
    """Read a file once so it sits in the page cache (README's *backing warm*)."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(bs)
        while f.readinto(buf):
            pass


# ---- mounts ---------------------------------------------------------------------------------
def is_mounted(path):
    return os.path.ismount(path)


def wait_mounted(path, timeout=30.0, proc=None):
    """Poll until path is a mount point; fail early if the daemon (proc) already died."""
    deadline = time.monotonic() + timeout
    while not os.path.ismount(path):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mount daemon for {path} exited {proc.returncode} before mounting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} not mounted after {timeout} s")
        time.sleep(0.01)


def umount(path, retries=50):
    """Unmount path (loop, kernel or FUSE).  Retries while busy; lazy unmount as a last
    resort so a failed benchmark never leaves a mount behind."""
    if not os.path.ismount(path):
        return
    for _ in range(retries):
        res = subprocess.run(["umount", path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if res.returncode == 0 or not os.path.ismount(path):
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", path], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def mountpoint(work, tag):
    """A fresh empty dir to mount on, under WORK/bench/mnt; unmounted (if needed) and removed after."""
    d = tempfile.mkdtemp(prefix=f"{tag}-", dir=cache_dir(work, "bench", "mnt"))
    try:
        yield d
    finally:
        umount(d)
        try:
            os.rmdir(d)
        except OSError:
            pass


def fresh_ext4(image, size):
    """A new sparse loop file of `size` bytes (an old one removed first) holding an empty ext4."""
    if os.path.exists(image):
        os.unlink(image)
    with open(image, "wb") as f:
        f.truncate(size)
    run(["mkfs.ext4", "-q", "-F", image])
    return image


@contextlib.contextmanager
def loop_mount(image, mnt, ro=False, fstype=None):
    """mount -o loop IMAGE MNT; the loop device autoclears when unmounted in finally."""
    cmd = ["mount", "-o", "loop,ro" if ro else "loop"]
    if fstype:
        cmd += ["-t", fstype]
    run(cmd + [image, mnt])
    try:
        yield mnt
    finally:
        umount(mnt)


def wait_unlocked(path, timeout=60.0):
    """Wait until nobody holds a flock on path (a FUSE daemon that locks its device keeps
    flushing for a moment after umount returns)."""
    deadline = time.monotonic() + timeout
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path} still locked {timeout} s after umount") from None
                time.sleep(0.02)
    finally:
        os.close(fd)


# ---- small persistent caches ------------------------------------------------------------------
def fresh_marker(marker, *sources):
    """True if marker exists and is newer than every source (a cached build is still valid)."""
    try:
        m = os.stat(marker).st_mtime
    except FileNotFoundError:
        return False
    return all(os.stat(s).st_mtime <= m for s in sources)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def save_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
