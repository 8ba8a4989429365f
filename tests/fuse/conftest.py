"""Fixtures of the FUSE tests: fresh devices and /sbin/mount.ctrfs for mount(8) (loop
devices come from tests/conftest.py).  The helpers (Mount, mkfs, fsck, manifest) are in
fusemount.py."""

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
