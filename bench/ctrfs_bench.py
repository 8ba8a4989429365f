"""ctrfs, measured the way bench/peers.py measures the peers: only through its tools, by
subprocess, timed from outside.  Each benchmark returns a dict of figures whose keys match
the peer it is compared with (see run.py's ROWS).

The tools and their contracts:
  mkfs.ctrfs -s SIZE FILE          create a loop file of SIZE with an empty ctrfs
  mount.ctrfs FILE DIR [-o OPTS]   mount; returns once mounted.  No -o: the writable tree;
                                   -o image=NAME,ro: image NAME, read-only
  umount DIR                       the daemon then flushes and exits (it drops its flock
                                   on FILE; we wait for that before touching FILE again)
  ctrfs commit MOUNTPOINT NAME     make an image NAME of the mounted writable tree
  fsck.ctrfs -f -n FILE            exit 0 when clean

Devices are built under WORK/bench/ctrfs/, once per process (never reused across runs: the
format is still moving); the benchmark that writes works on a copy, so every run starts
from the same committed state.
"""
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import peers  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("mkfs.ctrfs", "mount.ctrfs", "fsck.ctrfs", "ctrfs")
DEVICE_SIZE = "2G"            # the same 2 GiB as the ext4 peer
BIG_DEVICE_SIZE = "3G"        # holds the 1 GiB file with room for the log to breathe
RW_OPTS = None                # mount options for the writable tree (None: no -o)


def tool(name):
    """Where a ctrfs tool is: $CTRFS_BIN, then this checkout's .venv/bin (an editable
    install runs this checkout's code), then PATH, /usr/sbin, /sbin.  None if nowhere."""
    for d in (os.environ.get("CTRFS_BIN"), os.path.join(REPO, ".venv", "bin")):
        if d and os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return B.which(name)


def tool_paths(relative=False):
    """name -> path of each tool; relative=True names those inside this checkout relative
    to it (results.json is kept in the repository and must not name the machine's paths)."""
    paths = {t: tool(t) for t in TOOLS}
    if relative:
        paths = {t: os.path.relpath(p, REPO) if p and p.startswith(REPO + os.sep) else p
                 for t, p in paths.items()}
    return paths


def missing_tools():
    """The ctrfs tools not found anywhere tool() looks."""
    return [t for t, p in tool_paths().items() if not p]


def _tool(name):
    p = tool(name)
    if not p:
        raise RuntimeError(f"{name}: not found (install ctrfs or set CTRFS_BIN)")
    return p


# ---- the tools, one function each -----------------------------------------------------------
def mkfs(dev, size=DEVICE_SIZE):
    """mkfs.ctrfs -s SIZE DEV on a fresh loop file (an old one is removed first)."""
    if os.path.exists(dev):
        os.unlink(dev)
    B.run([_tool("mkfs.ctrfs"), "-s", str(size), dev])


def mount(dev, mnt, image=None, ro=False, opts=RW_OPTS, counts=None):
    """mount.ctrfs DEV MNT [-o image=NAME,ro]; returns once MNT is a mount point.  counts:
    a file for the daemon's request counts (CTRFS_REQUEST_COUNTS; older ctrfs write none)."""
    o = ([f"image={image}"] if image else []) + (["ro"] if ro else [])
    if opts:
        o.append(opts)
    cmd = [_tool("mount.ctrfs"), dev, mnt] + (["-o", ",".join(o)] if o else [])
    env = dict(os.environ, CTRFS_REQUEST_COUNTS=counts) if counts else None
    B.run(cmd, timeout=300, env=env)      # the contract: returns once mounted, the daemon in the background
    B.wait_mounted(mnt)


def umount(mnt, dev):
    """umount MNT, then wait until the daemon released DEV (it has flushed and exited)."""
    B.umount(mnt)
    if os.path.ismount(mnt):
        raise RuntimeError(f"{mnt}: still mounted after umount")
    B.wait_unlocked(dev)


@contextlib.contextmanager
def mounted(dev, work, image=None, ro=False, counts=None):
    """A fresh mount point with DEV mounted on it; always unmounted on the way out."""
    with B.mountpoint(work, "ctrfs") as mnt:
        mount(dev, mnt, image=image, ro=ro, counts=counts)
        try:
            yield mnt
        finally:
            umount(mnt, dev)


def commit(mnt, name):
    """ctrfs commit MNT NAME: the writable tree becomes image NAME."""
    B.run([_tool("ctrfs"), "commit", mnt, name])


def fsck(dev):
    """fsck.ctrfs -f -n DEV; returns its exit code (0: clean)."""
    return B.run([_tool("fsck.ctrfs"), "-f", "-n", dev], check=False).returncode


def statvfs_used_bytes(mnt):
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def copy_device(src, dst):
    """A private copy of a cached device (sparse, so holes stay holes)."""
    if os.path.exists(dst):
        os.unlink(dst)
    B.run(["cp", "--sparse=always", src, dst])


# ---- devices built for the benchmarks ---------------------------------------------------------
# Built at most once per process and never reused across runs: the on-disk format is still
# moving, and a device left by an older ctrfs would measure (or fail on) the old format.
_built = {}   # device path -> seconds its content took to write and commit


def forget_devices():
    """Build every device again (another ctrfs's tools are about to be measured)."""
    _built.clear()


def device_path(work, name):
    return os.path.join(B.cache_dir(work, "bench", "ctrfs"), f"{name}.ctrfs")


def counts_file(work, name):
    """Where a daemon writes its request counts; an old file is removed first."""
    path = os.path.join(B.cache_dir(work, "bench", "ctrfs"), f"{name}-requests.json")
    if os.path.exists(path):
        os.unlink(path)
    return path


def _import_tar_once(tar_path, dev, image_name, work, counts=None):
    """mkfs, mount the writable tree, tar -x + syncfs, commit; returns figures of one run."""
    t_all = time.perf_counter()
    mkfs(dev, DEVICE_SIZE)
    with mounted(dev, work, counts=counts) as mnt:
        t0 = time.perf_counter()
        B.run(["tar", "-xpf", tar_path, "-C", mnt] + peers.TAR_FLAGS)
        B.run(["sync", "-f", mnt])
        t_tar = time.perf_counter() - t0
        t0 = time.perf_counter()
        commit(mnt, image_name.lower())      # image names are lower case (tree C -> image c)
        t_commit = time.perf_counter() - t0
        used = statvfs_used_bytes(mnt)
    return dict(extract=t_tar, commit=t_commit, whole=time.perf_counter() - t_all, used=used)


def big_device(big_file, work):
    """A device holding the 1 GiB file in its writable tree, committed as image 'big'.
    Built once per process (see _built); returns (device, seconds to cp + commit)."""
    dev = device_path(work, "big")
    if dev in _built:
        return dev, _built[dev]
    mkfs(dev, BIG_DEVICE_SIZE)
    with mounted(dev, work) as mnt:
        t0 = time.perf_counter()
        B.run(["cp", big_file, os.path.join(mnt, os.path.basename(big_file))])
        commit(mnt, "big")
        _built[dev] = time.perf_counter() - t0
    return dev, _built[dev]


def tree_device(tar_path, work):
    """A device with the tar imported and committed as image NAME (A, B or C): the one
    import_tar left in this process, else built once."""
    name = os.path.splitext(os.path.basename(tar_path))[0]
    dev = device_path(work, name)
    if dev not in _built:
        f = _import_tar_once(tar_path, dev, name, work)
        _built[dev] = f["extract"] + f["commit"]
    return dev, name.lower()


# ---- benchmarks (keys match the peers') -------------------------------------------------------
def import_tar(tar_path, runs=5, work=None):
    """tar -x into a fresh 2 GiB ctrfs (writable tree) + syncfs, then ctrfs commit.
    Compared with peers.tar_extract_ext4; 'seconds' counts extract + commit, since the image
    exists only after the commit.  The last run's device is kept for walk() and fsck_time()."""
    name = os.path.splitext(os.path.basename(tar_path))[0]
    dev = device_path(work, name)
    _built.pop(dev, None)
    info = peers.tar_file_data_bytes(tar_path, work)
    figs = []
    counts = counts_file(work, "import_tar")
    for i in range(runs + 1):            # run 0 is the uncounted warm-up
        f = _import_tar_once(tar_path, dev, name, work, counts if i == runs else None)
        if i:
            figs.append(f)
    _built[dev] = figs[-1]["extract"] + figs[-1]["commit"]
    total = B.summarize([f["extract"] + f["commit"] for f in figs])
    return dict(
        tool="tar -x -> ctrfs + ctrfs commit", tar=tar_path, device=dev,
        seconds=total, mb_per_s=round(B.mb_per_s(info["file_bytes"], total["median"]), 1),
        extract_seconds=B.summarize([f["extract"] for f in figs]),
        commit_seconds=B.summarize([f["commit"] for f in figs]),
        seconds_with_mkfs_mount_umount=B.summarize([f["whole"] for f in figs]),
        tar_file_data_bytes=info["file_bytes"],
        bytes_used=figs[-1]["used"],
        bytes_allocated_in_image_file=os.stat(dev).st_blocks * 512,
        requests=B.load_json(counts))


def seq_read(big_file, runs=5, work=None):
    """dd bs=1M of the 1 GiB file from image 'big' mounted read-only; each run a fresh mount
    with the device file read into the page cache first (backing warm)."""
    dev, build_s = big_device(big_file, work)
    fname = os.path.basename(big_file)
    size = os.path.getsize(big_file)
    secs = []
    for _ in range(runs):
        B.warm(dev)
        with mounted(dev, work, image="big", ro=True) as mnt:
            secs.append(B.timed(["dd", f"if={os.path.join(mnt, fname)}", "of=/dev/null", "bs=1M"]))
    return dict(tool="ctrfs (image, ro)", device=dev, file_bytes=size,
                cp_and_commit_seconds=round(build_s, 4),
                mb_per_s=B.summarize([B.mb_per_s(size, s) for s in secs], digits=1),
                seconds=B.summarize(secs))


def walk(tar_path, runs=5, work=None):
    """`find MNT -type f | wc -l` and `du -s MNT` over the tree's image, each on a fresh
    read-only mount after dropping all caches (cold)."""
    dev, name = tree_device(tar_path, work)
    find_s, du_s, counts = [], [], set()
    for _ in range(runs):
        for what in ("find", "du"):
            with mounted(dev, work, image=name, ro=True) as mnt:
                B.drop_caches()
                if what == "find":
                    t, out = B.timed_capture(["sh", "-c", 'find "$1" -type f | wc -l', "sh", mnt])
                    find_s.append(t)
                    counts.add(int(out.strip()))
                else:
                    du_s.append(B.timed(["du", "-s", mnt]))
    return dict(tool="ctrfs (image, ro)", device=dev, files=sorted(counts),
                find_ms=B.summarize(find_s, scale=1000, digits=1),
                du_ms=B.summarize(du_s, scale=1000, digits=1))


def first_write(big_file, runs=5, work=None):
    """The first 4 KiB write in the middle of the 1 GiB file in the writable tree, right
    after it was committed as image 'big' (its blocks are shared with the image, so the
    write is a copy-on-write), then a second write.  Each run on a fresh copy of the device."""
    src, _ = big_device(big_file, work)
    dev = device_path(work, "big-work")
    fname = os.path.basename(big_file)
    first, second = [], []
    try:
        for _ in range(runs):
            copy_device(src, dev)
            B.warm(dev)
            with mounted(dev, work) as mnt:
                target = os.path.join(mnt, fname)
                first.append(peers._dd_write_4k(target))
                second.append(peers._dd_write_4k(target))
    finally:
        if os.path.exists(dev):
            os.unlink(dev)
    return dict(tool="ctrfs (writable tree over committed image)",
                first_write_seconds=B.summarize(first),
                second_write_seconds=B.summarize(second))


def fsck_time(tar_path, runs=5, work=None):
    """fsck.ctrfs -f -n of the tree's device, warm in the page cache; one uncounted warm-up.
    A non-zero exit is an error, never a figure."""
    dev, _name = tree_device(tar_path, work)
    B.warm(dev)
    secs = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        rc = fsck(dev)
        t = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"fsck.ctrfs -f -n {dev} exited {rc} (not clean)")
        if i:
            secs.append(t)
    return dict(tool="fsck.ctrfs -f -n", device=dev, seconds=B.summarize(secs))


def cp_a(src_dir, runs=5, work=None):
    """cp -a of a tree into a fresh writable tree, + syncfs, + umount (which waits for the
    last commit): the copy is on the device.  One uncounted warm-up."""
    dev = device_path(work, "cp")
    secs, counts = [], counts_file(work, "cp_a")
    for i in range(runs + 1):
        mkfs(dev, DEVICE_SIZE)
        with B.mountpoint(work, "ctrfs") as mnt:
            mount(dev, mnt, counts=counts if i == runs else None)
            try:
                t0 = time.perf_counter()
                B.run(["cp", "-a", src_dir, os.path.join(mnt, "t")])
                B.run(["sync", "-f", mnt])
            finally:
                umount(mnt, dev)
            t = time.perf_counter() - t0
        if i:
            secs.append(t)
    os.unlink(dev)
    return dict(tool="cp -a -> ctrfs (+ umount)", src=src_dir, seconds=B.summarize(secs),
                requests=B.load_json(counts))


def tar_create(tar_path, runs=5, work=None):
    """tar -c of the whole image (piped, so every file is read) on a fresh read-only
    mount, the device warm in the page cache."""
    dev, name = tree_device(tar_path, work)
    secs = []
    for _ in range(runs):
        B.warm(dev)
        with mounted(dev, work, image=name, ro=True) as mnt:
            secs.append(B.timed(["sh", "-c", peers.TAR_CREATE, "sh", mnt]))
    return dict(tool="ctrfs (image, ro)", device=dev, seconds=B.summarize(secs))


def container_start(tar_path, runs=5, work=None):
    """peers.CONTAINER_START on a fresh read-only mount of the image, all caches dropped
    after the mount (cold)."""
    dev, name = tree_device(tar_path, work)
    secs = []
    for _ in range(runs):
        with mounted(dev, work, image=name, ro=True) as mnt:
            B.drop_caches()
            secs.append(B.timed(["sh", "-c", peers.CONTAINER_START, "sh", mnt]))
    return dict(tool="ctrfs (image, ro)", device=dev, seconds=B.summarize(secs))


def mount_time(tar_path, runs=5, work=None):
    """Mount of a new writable clone of the tree's image (a container start) until the
    mount command returned and a stat of the root answered: the first mount of the device
    (it starts the daemon), and a second clone while the first is served (the daemon serves
    it).  The device warm in the page cache; one uncounted warm-up.  Also `ctrfs images
    DEV` on the unmounted device."""
    dev, name = tree_device(tar_path, work)
    B.warm(dev)
    first, later, images = [], [], []
    for i in range(runs + 1):
        with B.mountpoint(work, "mnt1") as m1, B.mountpoint(work, "mnt2") as m2:
            t0 = time.perf_counter()
            mount(dev, m1, image=name, opts=f"clone=bench-first-{i}")
            os.stat(m1)
            t1 = time.perf_counter()
            mount(dev, m2, image=name, opts=f"clone=bench-second-{i}")
            os.stat(m2)
            t2 = time.perf_counter()
            B.umount(m2)
            umount(m1, dev)
        t_images = B.timed([_tool("ctrfs"), "images", dev])
        if i:
            first.append(t1 - t0)
            later.append(t2 - t1)
            images.append(t_images)
    return dict(device=dev, first_seconds=B.summarize(first), served_seconds=B.summarize(later),
                images_seconds=B.summarize(images))


BENCHES = ("import_tar", "seq_read", "walk", "first_write", "fsck_time", "cp_a", "tar_create", "mount_time",
           "container_start")


def run_all(work=None, runs=5, tree="C", only=None, log=print):
    """Run every ctrfs benchmark (or those in only); {name: figures or {"error": ...}}.
    Raises RuntimeError when the tools are missing: there is nothing to measure."""
    missing = missing_tools()
    if missing:
        raise RuntimeError("ctrfs tools not found: " + ", ".join(missing))
    p = B.corpus_paths(work)
    tar = p["tars"][tree]
    calls = dict(
        import_tar=lambda: import_tar(tar, runs, work),
        seq_read=lambda: seq_read(p["big_file"], runs, work),
        walk=lambda: walk(tar, runs, work),
        first_write=lambda: first_write(p["big_file"], runs, work),
        fsck_time=lambda: fsck_time(tar, runs, work),
        cp_a=lambda: cp_a(p["rootfs"][tree], runs, work),
        tar_create=lambda: tar_create(tar, runs, work),
        mount_time=lambda: mount_time(tar, runs, work),
        container_start=lambda: container_start(tar, runs, work),
    )
    return B.run_benches(calls, BENCHES, only, log, "ctrfs")


if __name__ == "__main__":
    import json
    if missing_tools():
        print("ctrfs tools not found: " + ", ".join(missing_tools()), file=sys.stderr)
        sys.exit(1)
    json.dump(run_all(log=lambda m: print(m, file=sys.stderr)), sys.stdout, indent=2)
    print()
