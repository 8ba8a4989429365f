"""Real FUSE mounts (STYLE 24, pyfuse3's test shape): mount.ctrfs runs in the foreground as
a subprocess; the fixture waits for the mount, fails if the daemon dies, unmounts in
`finally` and asserts that the daemon exited 0 with nothing worse than INFO in its log.
A missing /dev/fuse (or fusermount3, or loop devices) is a failure, never a skip."""
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


@pytest.fixture
def image(tmp_path):
    return mkfs(tmp_path / "fs.img")


@pytest.fixture
def mounted(image, tmp_path):
    """A read-write mount of a fresh device, unmounted (and checked) at the end."""
    m = Mount(image, tmp_path / "mnt")
    m.start()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def sbin_mount_ctrfs():
    """/sbin/mount.ctrfs (what `make install` links) for mount(8) tests; made here and
    removed again if it was not there."""
    require_fuse()
    created = False
    if not SBIN_LINK.exists():
        SBIN_LINK.symlink_to(MOUNT_CTRFS)
        created = True
    try:
        yield SBIN_LINK
    finally:
        if created:
            SBIN_LINK.unlink()
