"""The peers, measured on this machine in the same run as ctrfs (bench/README.md, "Method",
says how).  Each function returns a dict of figures; times are whole-process
wall times; MB = 10^6 bytes.

  tar_extract_ext4(tar)           tar -x onto a fresh 2 GiB ext4 loop image, + syncfs
  squashfuse_seq_read(big_file)   dd bs=1M of the 1 GiB file from squashfuse, backing warm
  squashfuse_walk(rootfs_dir)     find / du over a fresh squashfuse mount, cold
  fuse_overlayfs_first_write(dir) first 4 KiB write in the middle of the 1 GiB file (copy-up)
  e2fsck_time(ext4_image)         e2fsck -fn
  fuse_overlayfs_tar_extract(tar) tar -x into fuse-overlayfs (lower empty, upper on ext4), + syncfs
  floor_tar_extract(tar)          tar -x into bench/floorfs.py (bare pyfuse3, same loop), + syncfs
  cp_a_ext4(dir)                  cp -a of a tree onto a fresh ext4, + syncfs
  squashfuse_tar_create(dir)      tar -c of a tree (piped, so tar reads the data) on a fresh squashfuse

Images the peers need (squashfs, ext4) are cached under WORK/bench/peers/ and rebuilt only when
their source changed.  Needs root, /dev/fuse and loop devices.

    python3 bench/peers.py [--work DIR] [--runs N] [NAME ...]
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

EXT4_IMAGE_SIZE = 2 * B.GiB
TAR_FLAGS = ["--numeric-owner", "--xattrs", "--xattrs-include=*"]
SQUASHFS_PLAIN = ["-noI", "-noD", "-noF", "-noX"]        # uncompressed: inodes, data, frags, xattrs
MID_4K_BLOCK = 131072                                      # 512 MiB / 4 KiB: middle of the 1 GiB file
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOORFS = os.path.join(REPO, "bench", "floorfs.py")
# GNU tar writing to /dev/null does not read file data at all: pipe it instead.
TAR_CREATE = 'tar -cf - -C "$1" . | cat > /dev/null'
# container start, cold: the python3 of the image imports what a small service does
CONTAINER_START = 'chroot "$1" /usr/bin/python3 -c "import json, email, http.client"'


def tar_file_data_bytes(tar_path, work=None):
    """Bytes of regular-file data in a tar (hardlinks counted once), cached by size and mtime."""
    st = os.stat(tar_path)
    cache_path = os.path.join(B.cache_dir(work, "bench", "peers"), "tar-sizes.json")
    cache = B.load_json(cache_path) or {}
    key = f"{os.path.abspath(tar_path)}:{st.st_size}:{st.st_mtime_ns}"
    if key not in cache:
        with tarfile.open(tar_path, "r:") as tf:
            cache[key] = dict(
                file_bytes=sum(m.size for m in tf if m.isreg()),
                entries=len(tf.getmembers()))
        B.save_json(cache_path, cache)
    return cache[key]


def dumpe2fs_fields(image):
    """The superblock fields dumpe2fs -h prints, as {name: text}."""
    fields = {}
    for line in B.run(["dumpe2fs", "-h", image], capture=True).splitlines():
        k, sep, v = line.partition(":")
        if sep:
            fields.setdefault(k.strip(), v.strip())
    return fields


def dumpe2fs_used_bytes(image):
    """(Block count - Free blocks) * Block size, from the superblock (run after umount)."""
    fields = dumpe2fs_fields(image)
    bs = int(fields["Block size"])
    return (int(fields["Block count"]) - int(fields["Free blocks"])) * bs, bs


def ext4_image_path(tar_path, work=None):
    name = os.path.splitext(os.path.basename(tar_path))[0]
    return os.path.join(B.cache_dir(work, "bench", "peers"), f"ext4-{name}.img")


def _extract_once(tar_path, image, work):
    """mkfs a fresh sparse image, mount it, time tar -x + syncfs; returns
    (tar+sync seconds, whole seconds including mkfs/mount/umount)."""
    t_all = time.perf_counter()
    B.fresh_ext4(image, EXT4_IMAGE_SIZE)
    with B.mountpoint(work, "ext4") as mnt, B.loop_mount(image, mnt):
        t0 = time.perf_counter()
        B.run(["tar", "-xpf", tar_path, "-C", mnt] + TAR_FLAGS)
        B.run(["sync", "-f", mnt])   # syncfs of this fs only: dirty data reaches the loop file
        t_tar = time.perf_counter() - t0
    return t_tar, time.perf_counter() - t_all


def tar_extract_ext4(tar_path, runs=5, work=None):
    """(a) tar -xpf --numeric-owner --xattrs onto a fresh 2 GiB ext4 loop image, + syncfs.
    One uncounted warm-up run (it also pulls the tar into the page cache).  The image of the
    last run is kept as ext4_image_path(tar_path) for e2fsck_time."""
    B.need_tools("mkfs.ext4", "dumpe2fs", "tar", "mount")
    image = ext4_image_path(tar_path, work)
    info = tar_file_data_bytes(tar_path, work)
    tar_s, whole_s = [], []
    for i in range(runs + 1):
        t, w = _extract_once(tar_path, image, work)
        if i:
            tar_s.append(t)
            whole_s.append(w)
    used, bs = dumpe2fs_used_bytes(image)
    sec = B.summarize(tar_s)
    return dict(
        tool="tar -x -> ext4 (loop, 2 GiB)", tar=tar_path, image=image,
        seconds=sec, mb_per_s=round(B.mb_per_s(info["file_bytes"], sec["median"]), 1),
        seconds_with_mkfs_mount_umount=B.summarize(whole_s),
        tar_file_data_bytes=info["file_bytes"], tar_entries=info["entries"],
        tar_bytes=os.path.getsize(tar_path),
        bytes_used=used, block_size=bs,
        bytes_allocated_in_image_file=os.stat(image).st_blocks * 512)


def squashfs_image(src, name, work=None):
    """An uncompressed squashfs of src (a file or a dir), cached under WORK/bench/peers/."""
    B.need_tools("mksquashfs")
    image = os.path.join(B.cache_dir(work, "bench", "peers"), f"{name}.sqsh")
    done = image + ".done"
    stamp = src + ".done" if os.path.exists(src + ".done") else src
    if not (os.path.exists(image) and B.fresh_marker(done, stamp)):
        for p in (image, done):
            if os.path.exists(p):
                os.unlink(p)
        B.run(["mksquashfs", src, image, "-no-progress", "-quiet"] + SQUASHFS_PLAIN)
        open(done, "w").close()
    return image


def _squashfuse_mount(image, mnt):
    B.run(["squashfuse", image, mnt])     # forks into the background once mounted
    B.wait_mounted(mnt)


def _timed_on_squashfuse(image, command, runs, work):
    """Seconds of command(mnt) per run, each on a fresh squashfuse mount of image (warm)."""
    secs = []
    for _ in range(runs):
        B.warm(image)
        with B.mountpoint(work, "sqfuse") as mnt:
            _squashfuse_mount(image, mnt)
            try:
                secs.append(B.timed(command(mnt)))
            finally:
                B.umount(mnt)
    return secs


def squashfuse_seq_read(big_file, runs=5, work=None):
    """(b) dd bs=1M of the 1 GiB file through squashfuse over an uncompressed squashfs.
    Each run: fresh mount (so the FUSE file's page cache is empty) with the backing image
    read into the page cache first (README's *backing warm*)."""
    B.need_tools("squashfuse", "dd")
    image = squashfs_image(big_file, "big", work)
    name = os.path.basename(big_file)
    size = os.path.getsize(big_file)
    secs = _timed_on_squashfuse(image, lambda mnt: ["dd", f"if={os.path.join(mnt, name)}",
                                                    "of=/dev/null", "bs=1M"], runs, work)
    rates = [B.mb_per_s(size, s) for s in secs]
    return dict(tool="squashfuse (uncompressed squashfs)", image=image, file_bytes=size,
                mb_per_s=B.summarize(rates, digits=1), seconds=B.summarize(secs))


def squashfuse_walk(rootfs_dir, runs=5, work=None):
    """(c) `find MNT -type f | wc -l` and `du -s MNT`, each on its own fresh squashfuse mount
    after dropping all caches (README's *cold*)."""
    B.need_tools("squashfuse", "find", "du")
    name = "rootfs-" + os.path.basename(os.path.normpath(rootfs_dir))
    image = squashfs_image(rootfs_dir, name, work)
    find_s, du_s, counts = [], [], set()
    for _ in range(runs):
        for what in ("find", "du"):
            with B.mountpoint(work, "sqwalk") as mnt:
                _squashfuse_mount(image, mnt)
                try:
                    B.drop_caches()
                    if what == "find":
                        t, out = B.timed_capture(["sh", "-c", 'find "$1" -type f | wc -l', "sh", mnt])
                        find_s.append(t)
                        counts.add(int(out.strip()))
                    else:
                        du_s.append(B.timed(["du", "-s", mnt]))
                finally:
                    B.umount(mnt)
    return dict(tool="squashfuse (uncompressed squashfs)", image=image,
                image_bytes=os.path.getsize(image), files=sorted(counts),
                find_ms=B.summarize(find_s, scale=1000, digits=1),
                du_ms=B.summarize(du_s, scale=1000, digits=1))


def squashfuse_mount(rootfs_dir, runs=5, work=None):
    """squashfuse of the tree's (uncompressed) squashfs until it returned and a stat of the
    root answered; the image warm in the page cache, one uncounted warm-up."""
    B.need_tools("squashfuse")
    image = squashfs_image(rootfs_dir, "rootfs-" + os.path.basename(os.path.normpath(rootfs_dir)), work)
    B.warm(image)
    secs = []
    for i in range(runs + 1):
        with B.mountpoint(work, "sqmount") as mnt:
            t0 = time.perf_counter()
            _squashfuse_mount(image, mnt)
            os.stat(mnt)
            t = time.perf_counter() - t0
            B.umount(mnt)
        if i:
            secs.append(t)
    return dict(tool="squashfuse (uncompressed squashfs)", image=image, seconds=B.summarize(secs))


def _dd_write_4k(path, fsync=False):
    cmd = ["dd", "if=/dev/zero", f"of={path}", "bs=4096", "count=1", f"seek={MID_4K_BLOCK}",
           "conv=notrunc,fsync" if fsync else "conv=notrunc", "status=none"]
    return B.timed(cmd)


def fuse_overlayfs_first_write(big_dir, runs=5, work=None, big_name="big.bin"):
    """(d) fuse-overlayfs with big_dir as lower (warm in the page cache) and upper/work dirs on
    a fresh ext4 loop image: time the first 4 KiB write in the middle of the 1 GiB file
    (a whole-file copy-up), then a second one.  Also times the same dd to /dev/null: the
    process-start floor."""
    B.need_tools("fuse-overlayfs", "mkfs.ext4", "dd")
    big = os.path.join(big_dir, big_name)
    size = os.path.getsize(big)
    upper_img = os.path.join(B.cache_dir(work, "bench", "peers"), "overlay-upper.img")
    B.fresh_ext4(upper_img, 2 * size)
    first, second, floor = [], [], []
    with B.mountpoint(work, "upper") as up, B.loop_mount(upper_img, up):
        for i in range(runs):
            B.warm(big)
            upper, wdir = os.path.join(up, f"u{i}"), os.path.join(up, f"w{i}")
            os.mkdir(upper)
            os.mkdir(wdir)
            with B.mountpoint(work, "ovl") as mnt:
                B.run(["fuse-overlayfs", "-o", f"lowerdir={big_dir},upperdir={upper},workdir={wdir}",
                       mnt])
                B.wait_mounted(mnt)
                try:
                    target = os.path.join(mnt, big_name)
                    first.append(_dd_write_4k(target))
                    second.append(_dd_write_4k(target))
                finally:
                    B.umount(mnt)
            floor.append(_dd_write_4k("/dev/null"))
            B.run(["rm", "-rf", "--one-file-system", upper, wdir])
    if os.path.exists(upper_img):
        os.unlink(upper_img)
    return dict(tool="fuse-overlayfs", lower=big_dir, file_bytes=size,
                first_write_seconds=B.summarize(first),
                second_write_seconds=B.summarize(second),
                process_floor_seconds=B.summarize(floor))


def e2fsck_time(ext4_image, runs=5):
    """(e) e2fsck -fn of an ext4 image, image warm in the page cache; one uncounted warm-up."""
    B.need_tools("e2fsck")
    secs, rcs = [], set()
    for i in range(runs + 1):
        t0 = time.perf_counter()
        res = B.run(["e2fsck", "-fn", ext4_image], check=False)
        t = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"e2fsck -fn {ext4_image} exited {res.returncode}: {res.stderr.strip()}")
        if i:
            secs.append(t)
        rcs.add(res.returncode)
    sb = dumpe2fs_fields(ext4_image)
    inodes = int(sb["Inode count"]) - int(sb["Free inodes"])
    return dict(tool="e2fsck -fn", image=ext4_image, seconds=B.summarize(secs),
                used_inodes=inodes, exit_codes=sorted(rcs))


def fresh_ext4(work, name, size=EXT4_IMAGE_SIZE):
    """A new sparse ext4 loop image (an old one is removed first)."""
    return B.fresh_ext4(os.path.join(B.cache_dir(work, "bench", "peers"), name), size)


def _timed_tar_x(tar_path, mnt):
    t0 = time.perf_counter()
    B.run(["tar", "-xpf", tar_path, "-C", mnt] + TAR_FLAGS)
    B.run(["sync", "-f", mnt])
    return time.perf_counter() - t0


def fuse_overlayfs_tar_extract(tar_path, runs=5, work=None):
    """tar -x (+ syncfs) into fuse-overlayfs over an empty lower dir, upper and work dirs on
    a fresh ext4 loop image; one uncounted warm-up."""
    B.need_tools("fuse-overlayfs", "mkfs.ext4", "tar")
    secs = []
    for i in range(runs + 1):
        image = fresh_ext4(work, "overlay-tar.img")
        with B.mountpoint(work, "ovup") as up, B.loop_mount(image, up):
            for d in ("lower", "upper", "work"):
                os.mkdir(os.path.join(up, d))
            with B.mountpoint(work, "ovtar") as mnt:
                B.run(["fuse-overlayfs", "-o", f"lowerdir={up}/lower,upperdir={up}/upper,workdir={up}/work", mnt])
                B.wait_mounted(mnt)
                try:
                    t = _timed_tar_x(tar_path, mnt)
                finally:
                    B.umount(mnt)
        os.unlink(image)
        if i:
            secs.append(t)
    return dict(tool="fuse-overlayfs (lower empty, upper on ext4)", tar=tar_path, seconds=B.summarize(secs))


def venv_python():
    """The checkout's .venv python: floorfs needs pyfuse3 and uvloop."""
    p = os.path.join(REPO, ".venv", "bin", "python")
    if not os.access(p, os.X_OK):
        raise RuntimeError(f"{p}: missing (make deps)")
    return p


@contextlib.contextmanager
def floorfs_mounted(work, counts=None):
    env = dict(os.environ, **({"CTRFS_REQUEST_COUNTS": counts} if counts else {}))
    with B.mountpoint(work, "floor") as mnt:
        proc = subprocess.Popen([venv_python(), FLOORFS, mnt], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            B.wait_mounted(mnt, proc=proc)
            yield mnt
        finally:
            B.umount(mnt)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def floor_tar_extract(tar_path, runs=5, work=None):
    """tar -x (+ syncfs) into floorfs, a pyfuse3 file system whose handlers only answer:
    the floor of the loop and the kernel under the same request mix.  Counts the requests
    of the last run."""
    secs = []
    counts = os.path.join(B.cache_dir(work, "bench", "peers"), "floor-requests.json")
    for i in range(runs + 1):
        with floorfs_mounted(work, counts if i == runs else None) as mnt:
            t = _timed_tar_x(tar_path, mnt)
        if i:
            secs.append(t)
    return dict(tool="floorfs (bench/floorfs.py, bare pyfuse3 on uvloop)", tar=tar_path,
                seconds=B.summarize(secs), requests=B.load_json(counts))


def cp_a_ext4(src_dir, runs=5, work=None):
    """cp -a of a tree onto a fresh 2 GiB ext4 loop image, + syncfs; one uncounted warm-up."""
    B.need_tools("mkfs.ext4", "cp")
    secs = []
    for i in range(runs + 1):
        image = fresh_ext4(work, "ext4-cp.img")
        with B.mountpoint(work, "ext4cp") as mnt, B.loop_mount(image, mnt):
            t0 = time.perf_counter()
            B.run(["cp", "-a", src_dir, os.path.join(mnt, "t")])
            B.run(["sync", "-f", mnt])
            t = time.perf_counter() - t0
        os.unlink(image)
        if i:
            secs.append(t)
    return dict(tool="cp -a -> ext4 (loop, 2 GiB)", src=src_dir, seconds=B.summarize(secs))


def squashfuse_tar_create(rootfs_dir, runs=5, work=None):
    """tar -c of the whole tree (piped to cat, so every file is read) on a fresh squashfuse
    mount, the image warm in the page cache."""
    B.need_tools("squashfuse", "tar")
    name = "rootfs-" + os.path.basename(os.path.normpath(rootfs_dir))
    image = squashfs_image(rootfs_dir, name, work)
    secs = _timed_on_squashfuse(image, lambda mnt: ["sh", "-c", TAR_CREATE, "sh", mnt], runs, work)
    return dict(tool="squashfuse (uncompressed squashfs)", image=image, seconds=B.summarize(secs))


def squashfuse_container_start(rootfs_dir, runs=5, work=None):
    """CONTAINER_START on a fresh squashfuse mount of the tree, all caches dropped after
    the mount (cold)."""
    B.need_tools("squashfuse", "chroot")
    name = "rootfs-" + os.path.basename(os.path.normpath(rootfs_dir))
    image = squashfs_image(rootfs_dir, name, work)
    secs = []
    for _ in range(runs):
        with B.mountpoint(work, "sqfuse") as mnt:
            _squashfuse_mount(image, mnt)
            try:
                B.drop_caches()
                secs.append(B.timed(["sh", "-c", CONTAINER_START, "sh", mnt]))
            finally:
                B.umount(mnt)
    return dict(tool="squashfuse (uncompressed squashfs)", image=image, seconds=B.summarize(secs))


# ---- all peers at once ----------------------------------------------------------------------
PEERS = ("tar_extract_ext4", "squashfuse_seq_read", "squashfuse_walk",
         "fuse_overlayfs_first_write", "e2fsck_time", "fuse_overlayfs_tar_extract",
         "floor_tar_extract", "cp_a_ext4", "squashfuse_tar_create", "squashfuse_mount",
         "squashfuse_container_start")


def run_all(work=None, runs=5, tree="C", only=None, log=print):
    """Run every peer (or those named in only) on the corpus; returns {name: figures}.
    A peer that fails records {"error": ...}; nothing is ever filled in."""
    p = B.corpus_paths(work)
    tar = p["tars"][tree]
    calls = dict(
        tar_extract_ext4=lambda: tar_extract_ext4(tar, runs, work),
        squashfuse_seq_read=lambda: squashfuse_seq_read(p["big_file"], runs, work),
        squashfuse_walk=lambda: squashfuse_walk(p["rootfs"][tree], runs, work),
        fuse_overlayfs_first_write=lambda: fuse_overlayfs_first_write(p["big_dir"], runs, work),
        e2fsck_time=lambda: e2fsck_time(_ext4_image_for(tar, work), runs),
        fuse_overlayfs_tar_extract=lambda: fuse_overlayfs_tar_extract(tar, runs, work),
        floor_tar_extract=lambda: floor_tar_extract(tar, runs, work),
        cp_a_ext4=lambda: cp_a_ext4(p["rootfs"][tree], runs, work),
        squashfuse_tar_create=lambda: squashfuse_tar_create(p["rootfs"][tree], runs, work),
        squashfuse_mount=lambda: squashfuse_mount(p["rootfs"][tree], runs, work),
        squashfuse_container_start=lambda: squashfuse_container_start(p["rootfs"][tree], runs, work),
    )
    return B.run_benches(calls, PEERS, only, log, "peer")


def _ext4_image_for(tar_path, work):
    """The ext4 image of tar_path that tar_extract_ext4 left, built once if missing."""
    image = ext4_image_path(tar_path, work)
    if not os.path.exists(image):
        _extract_once(tar_path, image, work)
    return image


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help=f"corpus dir (default $CTRFS_CORPUS, $WORK or {B.DEFAULT_WORK})")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tree", default="C", choices="ABC")
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help="peers to run (default all): " + ", ".join(PEERS))
    args = ap.parse_args(argv)
    bad = [n for n in args.names if n not in PEERS]
    if bad:
        ap.error("unknown peer: " + ", ".join(bad))
    if not B.corpus_complete(args.work):
        ap.error(f"no complete corpus in {B.work_dir(args.work)}: run bench/corpus.py")
    res = run_all(args.work, args.runs, args.tree, args.names,
                  log=lambda m: print(m, file=sys.stderr))
    json.dump(res, sys.stdout, indent=2)
    print()
    return 1 if any("error" in v for v in res.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
