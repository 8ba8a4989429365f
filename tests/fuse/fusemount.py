"""Helpers of the FUSE tests (a uniquely named module: every tests/ folder has its own
conftest).  Real mounts, in pyfuse3's test shape: mount.ctrfs runs in the
foreground as a subprocess; Mount waits for the mount, fails if the daemon dies, unmounts
and asserts that the daemon exited 0 with nothing worse than INFO in its log.  A missing
/dev/fuse (or fusermount3, or loop devices) is a failure, never a skip."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
MOUNT_CTRFS = BIN / "mount.ctrfs"
SBIN_LINK = Path("/sbin/mount.ctrfs")


def require_fuse():
    assert os.path.exists("/dev/fuse"), "/dev/fuse is missing: FUSE tests cannot run"
    assert shutil.which("fusermount3"), "fusermount3 is missing (apt install fuse3)"
    assert MOUNT_CTRFS.exists(), f"{MOUNT_CTRFS} is not installed (pip install -e .)"


def mkfs(path, size="256M"):
    """A fresh ctrfs loop file, through the console script."""
    subprocess.run([str(BIN / "mkfs.ctrfs"), "-q", "-s", size, str(path)], check=True,
                   capture_output=True, timeout=120)
    return Path(path)


def fsck(path):
    """fsck.ctrfs's checker on an unmounted device: returns its problems ([] when clean)."""
    from ctrfs.fsck.checks import check_device
    res = check_device(str(path))
    assert res.exit_code == 0, res.problems
    return res


class Mount:
    """One mount.ctrfs -f process.  `expect_log` lists fragments of WARNING/ERROR lines a
    test provokes on purpose; any other such line fails the unmount."""

    def __init__(self, device, mountpoint, *options, expect_log=()):
        self.device = Path(device)
        self.path = Path(mountpoint)
        self.options = [o for o in options if o]
        self.expect_log = list(expect_log)
        self.proc = None
        self.log_path = self.path.parent / f"{self.path.name}.mount.log"

    def start(self, timeout=30):
        require_fuse()
        self.path.mkdir(parents=True, exist_ok=True)
        cmd = [str(MOUNT_CTRFS), str(self.device), str(self.path), "-f"]
        if self.options:
            cmd += ["-o", ",".join(self.options)]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        wait_for_mount(self.path, self.proc, self.log_path, timeout)
        return self

    def stop(self, timeout=120):
        """umount, wait for the daemon (it commits after the unmount), check exit and log."""
        if self.proc is None:
            return
        try:
            if os.path.ismount(self.path):
                subprocess.run(["umount", str(self.path)], check=True, capture_output=True, timeout=60)
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)
            self.log.close()
            self.proc = None
        assert rc == 0, f"mount.ctrfs exited {rc}:\n{self.log_text()}"
        self.check_log()

    def kill(self):
        """kill -9 the daemon and detach its dead mount (as an admin would)."""
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=True, capture_output=True)
        self.log.close()
        self.proc = None

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def check_log(self):
        bad = [line for line in self.log_text().splitlines()
               if any(w in line for w in (" WARNING", " ERROR", " CRITICAL", "Traceback"))
               and not any(e in line for e in self.expect_log)]
        assert not bad, "unexpected log lines:\n" + "\n".join(bad)
        self.log_path.unlink(missing_ok=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __truediv__(self, other):
        return self.path / other


def wait_for_mount(path, proc, log_path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mount.ctrfs exited {proc.returncode} before mounting:\n"
                        f"{Path(log_path).read_text(errors='replace')}")
        if os.path.ismount(path):
            return
        time.sleep(0.02)
    pytest.fail(f"{path} not mounted after {timeout} s")


def wait_unlocked(device, timeout=60):
    """A daemonized mount.ctrfs holds the device's flock until its final commit is done."""
    import fcntl
    deadline = time.monotonic() + timeout
    with open(device, "rb") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{device} still locked {timeout} s after umount")
                time.sleep(0.05)


# ---- what a tree looks like -------------------------------------------------------------------
def manifest(root, *, times=True):
    """{relative path: attributes, content digest or link target, xattrs} of a whole tree
    (lstat, no symlinks followed): two views of one version compare equal."""
    import hashlib
    import stat as st_

    out = {}
    root = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames] + ([] if dirpath != root else ["."]):
            path = os.path.join(dirpath, name) if name != "." else root
            st = os.lstat(path)
            if st_.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    body = hashlib.sha256(f.read()).hexdigest()
            elif st_.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            else:
                body = None
            xattrs = {x: os.getxattr(path, x, follow_symlinks=False)
                      for x in sorted(os.listxattr(path, follow_symlinks=False))}
            row = dict(mode=st.st_mode, uid=st.st_uid, gid=st.st_gid, nlink=st.st_nlink, ino=st.st_ino,
                       size=st.st_size if not st_.S_ISDIR(st.st_mode) else None, rdev=st.st_rdev,
                       body=body, xattrs=xattrs)
            if times:
                row.update(mtime=st.st_mtime_ns, ctime=st.st_ctime_ns)
            out[os.path.relpath(path, root)] = row
    return out


def diff_manifests(a, b):
    """Readable differences (for assertion messages)."""
    lines = [f"only in first: {p}" for p in sorted(a.keys() - b.keys())]
    lines += [f"only in second: {p}" for p in sorted(b.keys() - a.keys())]
    for p in sorted(a.keys() & b.keys()):
        for k in a[p]:
            if a[p][k] != b[p].get(k):
                lines.append(f"{p}: {k} {a[p][k]!r} != {b[p].get(k)!r}")
    return "\n".join(lines[:40])


def assert_same_tree(a, b):
    assert a == b, diff_manifests(a, b)
