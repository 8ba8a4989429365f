"""Fixtures of the FUSE tests: fresh devices, /sbin/mount.ctrfs for mount(8), loop
devices.  The helpers (Mount, mkfs, fsck, manifest) are in fusemount.py."""
import subprocess

import pytest
from fusemount import MOUNT_CTRFS, SBIN_LINK, mkfs, require_fuse


@pytest.fixture
def image(tmp_path):
    return mkfs(tmp_path / "fs.img")


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


@pytest.fixture
def loopdev():
    """attach(path, readonly=False) -> /dev/loopN, detached in finally.  No loop devices
    is a failure, not a skip."""
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
