"""Build (or reuse) the benchmark corpus: three Debian root file systems, their tars, an OCI
layout with the three stacked, and a 1 GiB random file.  Run as root (debootstrap).

    python3 bench/corpus.py [--work DIR] [--force] [--no-big]

Layout under WORK (default $CTRFS_CORPUS, $WORK or /var/tmp/ctrfs-corpus; ~3 GB):
  rootfs/{A,B,C}/   debootstrap --variant=minbase of SUITE (bookworm);
                    B adds python3,git and C adds build-essential,perl,curl on top of B
  tars/{A,B,C}.tar  numeric-owner tars of each tree, xattrs and ACLs included
  oci/              one OCI image layout (umoci), tags A B C: A is one layer, B is A plus
                    a diff layer, C is B plus a diff layer
  big/big.bin       1 GiB from the kernel's random source (throughput and copy-up)
  corpus-stats.txt  sizes and counts of what was built
Each step is built under a temporary name, renamed into place and then marked with a
`.done` file (benchlib.corpus_complete looks for them), so an interrupted build never leaves
a step that looks finished; a rerun redoes only the steps without a marker.  Rebuilding a
tree invalidates its tar and the OCI layout.

Environment: SUITE, MIRROR (default: the Debian mirror apt already uses for SUITE),
PKGS_B, PKGS_C (comma lists).  Stdlib only.
"""
import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

TREES = "ABC"
TOOLS = {"debootstrap": "debootstrap", "umoci": "umoci", "rsync": "rsync", "tar": "tar"}
BIG_BYTES = 1 << 30
CHUNK = 8 << 20


class CorpusError(Exception):
    pass


def log(msg):
    print(f"[corpus {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd, logfile=None, **kw):
    """Run cmd; on failure raise CorpusError naming it, with the end of its output."""
    if logfile:
        with open(logfile, "w") as f:
            res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, **kw)
        if res.returncode:
            with open(logfile) as f:
                tail = "".join(f.readlines()[-15:])
            raise CorpusError(f"{cmd[0]} exited {res.returncode} (log {logfile}):\n{tail}")
        return
    B.run(cmd, **kw)


# ---- packages and mirror ------------------------------------------------------------------
def package_sets():
    b = os.environ.get("PKGS_B", "python3,git")
    c = os.environ.get("PKGS_C", "build-essential,perl,curl")
    return {"A": "", "B": b, "C": ",".join(p for p in (b, c) if p)}


def find_mirror(suite):
    """The http(s) mirror apt is configured with for SUITE/main (none is written in here)."""
    if os.environ.get("MIRROR"):
        return os.environ["MIRROR"]
    out = subprocess.run(["apt-cache", "policy"], capture_output=True, text=True).stdout
    pat = re.compile(r"^\s*\d+\s+(https?://\S+)\s+" + re.escape(suite) + r"/main\s")
    for line in out.splitlines():
        m = pat.match(line)
        if m:
            return m.group(1)
    raise CorpusError(f"no Debian mirror for {suite}/main in `apt-cache policy`; set MIRROR=URL")


# ---- removing half-built trees safely -----------------------------------------------------
def umount_below(path):
    """Unmount whatever a failed debootstrap left mounted inside path (proc, sys, ...)."""
    out = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
    prefix = os.path.abspath(path) + "/"
    for m in sorted((t for t in out.split() if t.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", m])


def remove(path):
    """rm -rf that never crosses into a file system mounted inside path."""
    if os.path.isdir(path) and not os.path.islink(path):
        umount_below(path)
        subprocess.run(["rm", "-rf", "--one-file-system", path], check=True)
    elif os.path.lexists(path):
        os.unlink(path)


def publish(tmp, final, marker):
    """Move a finished step into place, then mark it done (in that order)."""
    remove(final)
    os.rename(tmp, final)
    with open(marker, "w") as f:
        f.write(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))


# ---- the steps ----------------------------------------------------------------------------
def build_rootfs(w, name, include, suite, mirror):
    final = os.path.join(w, "rootfs", name)
    marker = final + ".done"
    if os.path.exists(marker) and os.path.isdir(final):
        return False
    tmp = final + ".tmp"
    remove(tmp)
    log(f"debootstrap {name} ({include or 'minbase only'})")
    cmd = ["debootstrap", "--variant=minbase", f"--cache-dir={os.path.join(w, 'debcache')}"]
    if include:
        cmd.append(f"--include={include}")
    try:
        sh(cmd + [suite, tmp, mirror], logfile=final + ".log")
    finally:
        umount_below(tmp)
    # an image ships no package cache nor apt lists
    for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
        base = os.path.join(tmp, d)
        for e in os.listdir(base) if os.path.isdir(base) else ():
            p = os.path.join(base, e)
            if os.path.isfile(p) and (e.endswith(".deb") or "_" in e):
                os.unlink(p)
    publish(tmp, final, marker)
    return True


def build_tar(w, name):
    final = os.path.join(w, "tars", f"{name}.tar")
    if os.path.exists(final + ".done"):
        return
    log(f"tar {name}")
    tmp = final + ".tmp"
    sh(["tar", "--one-file-system", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
        "--sort=name", "-cpf", tmp, "-C", os.path.join(w, "rootfs", name), "."])
    publish(tmp, final, final + ".done")


def build_oci(w):
    """umoci layout with tags A, B, C, each the one before plus one diff layer."""
    final = os.path.join(w, "oci")
    marker = final + ".done"
    if os.path.exists(marker):
        return
    log("OCI layout A, B, C")
    tmp, bundle = final + ".tmp", os.path.join(w, "oci-bundle")
    remove(tmp)
    sh(["umoci", "init", "--layout", tmp])
    sh(["umoci", "new", "--image", f"{tmp}:A"])
    prev = None
    for name in TREES:
        if prev:      # start from prev's manifest: the repack then adds only the difference
            sh(["umoci", "tag", "--image", f"{tmp}:{prev}", name])
        remove(bundle)
        sh(["umoci", "unpack", "--image", f"{tmp}:{name}", bundle])
        sh(["rsync", "-aHAXx", "--numeric-ids", "--delete",
            os.path.join(w, "rootfs", name) + "/", os.path.join(bundle, "rootfs") + "/"])
        sh(["umoci", "repack", "--image", f"{tmp}:{name}", bundle])
        sh(["umoci", "config", "--image", f"{tmp}:{name}", "--config.cmd=/bin/sh",
            "--author=ctrfs-bench"])
        prev = name
    remove(bundle)
    sh(["umoci", "gc", "--layout", tmp])
    publish(tmp, final, marker)


def build_big(w):
    final = os.path.join(w, "big", "big.bin")
    if os.path.exists(final + ".done"):
        return
    log("1 GiB random file")
    tmp = final + ".tmp"
    with open(tmp, "wb") as f:
        for _ in range(BIG_BYTES // CHUNK):
            f.write(os.urandom(CHUNK))
    publish(tmp, final, final + ".done")


def tree_stats(root):
    """(du bytes, apparent bytes, files, dirs, symlinks, other, files with nlink>1,
    entries with xattrs) of a tree, without crossing mounts."""
    c = dict(du=0, app=0, files=0, dirs=0, links=0, other=0, hard=0, xattrs=0)
    dev = os.lstat(root).st_dev
    seen = set()              # hardlinked inodes take space once, as du counts them
    todo = [root]
    while todo:
        top = todo.pop()
        c["dirs"] += 1
        st = os.lstat(top)
        c["du"] += st.st_blocks * 512
        c["app"] += st.st_size
        c["xattrs"] += bool(os.listxattr(top, follow_symlinks=False))
        with os.scandir(top) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if e.is_dir(follow_symlinks=False):
                    if st.st_dev == dev:
                        todo.append(e.path)
                    continue
                if st.st_nlink < 2 or (st.st_ino not in seen and not seen.add(st.st_ino)):
                    c["du"] += st.st_blocks * 512
                    c["app"] += st.st_size
                c["xattrs"] += bool(os.listxattr(e.path, follow_symlinks=False))
                if e.is_file(follow_symlinks=False):
                    c["files"] += 1
                    c["hard"] += st.st_nlink > 1
                elif e.is_symlink():
                    c["links"] += 1
                else:
                    c["other"] += 1
    return tuple(c.values())


def write_stats(w, suite):
    sets = package_sets()
    lines = [f"# corpus stats ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}) suite={suite} "
             f"B={sets['B']} C={sets['C']}",
             "tree     du_bytes   apparent_B    files     dirs symlinks    other hardlinked xattrs"]
    for n in TREES:
        lines.append("%-4s %12d %12d %8d %8d %8d %8d %10d %6d" % ((n,) + tree_stats(os.path.join(w, "rootfs", n))))
    lines += ["", "# tars (bytes)"]
    lines += [f"{n}.tar {os.path.getsize(os.path.join(w, 'tars', n + '.tar'))}" for n in TREES]
    blobs = os.path.join(w, "oci", "blobs", "sha256")
    lines += ["", f"# OCI blobs: {len(os.listdir(blobs))} files, "
              f"{sum(os.path.getsize(os.path.join(blobs, b)) for b in os.listdir(blobs))} bytes"]
    text = "\n".join(lines) + "\n"
    tmp = os.path.join(w, "corpus-stats.txt.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(w, "corpus-stats.txt"))
    return text


def build(work=None, force=False, big=True):
    w = B.work_dir(work)
    missing = [pkg for exe, pkg in TOOLS.items() if not B.which(exe)]
    if missing:
        raise CorpusError("missing tools, Debian packages: " + " ".join(missing) +
                          " (`make bench` installs them)")
    suite = os.environ.get("SUITE", "bookworm")
    for d in ("rootfs", "tars", "big", "debcache"):
        os.makedirs(os.path.join(w, d), exist_ok=True)
    if force:
        for n in TREES:
            for m in (f"rootfs/{n}.done", f"tars/{n}.tar.done"):
                remove(os.path.join(w, m))
        for m in ("oci.done", "big/big.bin.done", "corpus-stats.txt"):
            remove(os.path.join(w, m))
    mirror = None
    for n, include in package_sets().items():
        if not os.path.exists(os.path.join(w, "rootfs", n + ".done")):
            mirror = mirror or find_mirror(suite)
        if mirror and build_rootfs(w, n, include, suite, mirror):
            for m in (f"tars/{n}.tar.done", "oci.done"):   # built from this tree: redo them
                remove(os.path.join(w, m))
    for n in TREES:
        build_tar(w, n)
    build_oci(w)
    if big:
        build_big(w)
    print(write_stats(w, suite), end="")
    log(f"corpus complete in {w}")
    return w


def main(argv=None):
    ap = argparse.ArgumentParser(description="build the ctrfs benchmark corpus")
    ap.add_argument("--work", help=f"corpus dir (default $CTRFS_CORPUS, $WORK or {B.DEFAULT_WORK})")
    ap.add_argument("--force", action="store_true", help="rebuild every step")
    ap.add_argument("--no-big", action="store_true", help="skip the 1 GiB file (the corpus is then incomplete)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("corpus.py: must run as root (debootstrap)", file=sys.stderr)
        return 16
    try:
        build(args.work, args.force, not args.no_big)
    except (CorpusError, RuntimeError, OSError) as exc:
        print(f"corpus.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
