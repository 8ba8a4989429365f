"""An image build: `dpkg -i` of the 39 packages that make tree B from tree A (python3, git
and what they need, from the corpus's .deb cache), in a chroot whose root is tree A on:
a writable ctrfs clone of image A (imported from the corpus's OCI layout), fuse-overlayfs
and kernel overlayfs (lower: rootfs/A, upper on ext4) and a plain copy on ext4.

    sudo python3 bench/build.py [--work CORPUS] [--runs N] [--json FILE]

Per run and file system: a fresh root, the .debs copied into its /tmp and /dev, /proc
bound (not timed); then `chroot ROOT dpkg -i /tmp/debs/*.deb` and `sync -f ROOT` (timed;
ctrfs also commits the clone at umount, not timed).  Wall seconds, medians of --runs;
JSON (also bench/results-build.json), a table on stderr."""
import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import ctrfs_bench as CB  # noqa: E402


def packages(rootfs):
    """{package: (version, arch)} installed in a tree (its dpkg status)."""
    out = {}
    with open(os.path.join(rootfs, "var/lib/dpkg/status")) as f:
        for block in f.read().split("\n\n"):
            m = dict(re.findall(r"^(Package|Version|Architecture|Status): (.*)$", block, re.M))
            if m.get("Status", "").endswith(" installed") and "Package" in m:
                out[m["Package"]] = (m["Version"], m["Architecture"])
    return out


def build_debs(paths):
    """The .deb files of the packages B has and A has not (or at another version)."""
    a, b = packages(paths["rootfs"]["A"]), packages(paths["rootfs"]["B"])
    cache = os.path.join(paths["work"], "debcache")
    debs = []
    for name, (ver, arch) in sorted(b.items()):
        if a.get(name) != (ver, arch):
            f = os.path.join(cache, f"{name}_{ver.replace(':', '%3a')}_{arch}.deb")
            if not os.path.exists(f):
                raise RuntimeError(f"{f}: not in the corpus's .deb cache")
            debs.append(f)
    return debs


# In stages, as debootstrap does: a pass installs what its pre-dependencies allow, the
# next takes the rest (--skip-same-version: what is installed is not redone).
STAGES = ("cd /tmp/debs && for pass in 1 2 3 4 5; do "
          "dpkg -i --skip-same-version *.deb && break; done; dpkg --configure -a")


@contextlib.contextmanager
def chroot_ready(root, debs):
    """/tmp/debs filled, /dev and /proc bound; all undone after."""
    target = os.path.join(root, "tmp", "debs")
    os.makedirs(target, exist_ok=True)
    for d in debs:
        shutil.copy(d, target)
    B.run(["mount", "--bind", "/dev", os.path.join(root, "dev")])
    try:
        B.run(["mount", "-t", "proc", "proc", os.path.join(root, "proc")])
        try:
            yield
        finally:
            B.umount(os.path.join(root, "proc"))
    finally:
        B.umount(os.path.join(root, "dev"))


def install(root, debs):
    with chroot_ready(root, debs):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
        secs = B.timed(["sh", "-c", 'chroot "$1" sh -c "$2" > /dev/null 2>&1; sync -f "$1"', "sh", root, STAGES],
                       env=env)
        B.run(["chroot", root, "dpkg", "-s", "python3", "git"], capture=True)
        if not os.path.exists(os.path.join(root, "usr/bin/git")):
            raise RuntimeError(f"{root}: dpkg ran but git is not installed")
        return secs


def on_ctrfs(paths, work, scratch, debs, k):
    dev = os.path.join(scratch, "build.ctrfs")
    if not os.path.exists(dev):
        CB.mkfs(dev, "4G")
        B.run([CB._tool("ctrfs"), "import", dev, f"oci:{paths['oci']}:A", "--name", "a:1", "-q"])
    with B.mountpoint(work, "ctrfs") as mnt:
        CB.mount(dev, mnt, image="a:1", opts=f"clone=build{k}")
        try:
            return install(mnt, debs)
        finally:
            CB.umount(mnt, dev)


def _ext4(scratch):
    return B.fresh_ext4(os.path.join(scratch, "ext4.img"), 4 << 30)


def on_overlay(paths, work, scratch, debs, k, fuse):
    img = _ext4(scratch)
    with B.mountpoint(work, "ext4") as ext:
        with B.loop_mount(img, ext):
            upper, workdir = os.path.join(ext, "upper"), os.path.join(ext, "work")
            os.makedirs(upper)
            os.makedirs(workdir)
            with B.mountpoint(work, "ovl") as mnt:
                opts = f"lowerdir={paths['rootfs']['A']},upperdir={upper},workdir={workdir}"
                if fuse:
                    B.run(["fuse-overlayfs", "-o", opts, mnt])
                else:
                    B.run(["mount", "-t", "overlay", "overlay", "-o", opts, mnt])
                B.wait_mounted(mnt)
                try:
                    return install(mnt, debs)
                finally:
                    B.umount(mnt)


def on_ext4(paths, work, scratch, debs, k):
    img = _ext4(scratch)
    with B.mountpoint(work, "ext4") as ext:
        with B.loop_mount(img, ext):
            B.run(["cp", "-a", paths["rootfs"]["A"] + "/.", ext])
            return install(ext, debs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="corpus dir (default $CTRFS_CORPUS, $WORK or /var/tmp/ctrfs-corpus)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results-build.json"))
    args = ap.parse_args()
    B.need_tools("fuse-overlayfs", "mkfs.ext4", "chroot", "dpkg")
    paths = B.corpus_paths(args.work)
    debs = build_debs(paths)
    scratch = tempfile.mkdtemp(prefix="ctrfs-build-", dir="/var/tmp")
    systems = {"ctrfs (writable clone)": lambda k: on_ctrfs(paths, args.work, scratch, debs, k),
               "fuse-overlayfs": lambda k: on_overlay(paths, args.work, scratch, debs, k, True),
               "kernel overlayfs": lambda k: on_overlay(paths, args.work, scratch, debs, k, False),
               "ext4": lambda k: on_ext4(paths, args.work, scratch, debs, k)}
    secs = {name: [] for name in systems}
    try:
        for k in range(args.runs):              # the systems take turns within each run
            for name, fn in systems.items():
                secs[name].append(fn(k))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {name: statistics.median(v) for name, v in secs.items()}
    for name, v in med.items():
        print(f"{name:24} {v:6.2f} s  ctrfs/this {med['ctrfs (writable clone)'] / v:5.2f}x",
              file=sys.stderr)
    out = {"packages": len(debs), "runs": args.runs, "seconds": secs, "median": med,
           "machine": {"loadavg": os.getloadavg()}}
    B.save_json(args.json, out)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
