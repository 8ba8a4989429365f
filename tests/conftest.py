"""Shared by every test tier: the hypothesis profiles, registered once.

HYPOTHESIS_PROFILE=ci (default): derandomised, a fixed number of examples, no deadline
(CI machines stall).  HYPOTHESIS_PROFILE=deep: many more random examples, for a soak run.
"""
import os
import subprocess

import pytest
from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=100, print_blob=True,
                          suppress_health_check=_SLOW_OK)
settings.register_profile("deep", deadline=None, max_examples=5000, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def loopdev():
    """attach(path, readonly=False) -> /dev/loopN, detached in finally.  No loop devices
    is a failure, not a skip: they are requirements of the suite."""
    attached = []

    def attach(path, readonly=False):
        cmd = ["losetup", "-f", "--show"] + (["-r"] if readonly else []) + [str(path)]
        dev = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
        attached.append(dev)
        return dev

    try:
        yield attach
    finally:
        for dev in attached:
            subprocess.run(["losetup", "-d", dev], check=False)


UMOUNT_HELPER = "/sbin/umount.fuse.ctrfs"


@pytest.fixture(scope="session", autouse=True)
def umount_helper():
    """/sbin/umount.fuse.ctrfs (what `make install` links) during the whole run, so every
    `umount` of a test waits for the daemon's last checkpoint as it does for users; the
    link that was there before is put back."""
    import sys
    mine = os.path.join(os.path.dirname(sys.executable), "umount.fuse.ctrfs")
    before = os.readlink(UMOUNT_HELPER) if os.path.islink(UMOUNT_HELPER) else None
    if os.path.lexists(UMOUNT_HELPER) and before is None:
        yield UMOUNT_HELPER        # a real file someone installed: leave it alone
        return
    tmp = UMOUNT_HELPER + ".tests"
    os.symlink(mine, tmp)
    os.replace(tmp, UMOUNT_HELPER)
    try:
        yield UMOUNT_HELPER
    finally:
        if before is None:
            os.unlink(UMOUNT_HELPER)
        else:
            os.symlink(before, tmp)
            os.replace(tmp, UMOUNT_HELPER)


@pytest.fixture
def device_path(tmp_path, loopdev):
    """path(image, kind) -> another name of the same device: "file" (the image itself),
    "symlink" to it, "loop" device backed by it, "bind" mount of it onto another file.
    Bind mounts are undone in finally, before loopdev detaches its devices."""
    binds = []

    def path(image, kind):
        if kind == "file":
            return str(image)
        if kind == "symlink":
            link = tmp_path / f"{image.name}.link"
            link.symlink_to(image)
            return str(link)
        if kind == "loop":
            return loopdev(image)
        assert kind == "bind", kind
        target = tmp_path / f"{image.name}.bind"
        target.touch()
        subprocess.run(["mount", "--bind", str(image), str(target)], check=True)
        binds.append(target)
        return str(target)

    try:
        yield path
    finally:
        failed = [t for t in reversed(binds) if subprocess.run(["umount", str(t)]).returncode]
        assert not failed, f"bind mounts left: {failed}"
