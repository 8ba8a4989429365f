"""Fixtures of the tool tests: a fresh image, loop devices."""
import subprocess

import pytest
from toolrun import assert_ok, mkfs


@pytest.fixture
def image(tmp_path):
    """A fresh 64 MiB ctrfs loop file."""
    path = tmp_path / "fs.img"
    assert_ok(mkfs("-q", "-s", "64M", path))
    return path


@pytest.fixture
def loopdev():
    """Attach a file to a free loop device; detached in finally.  No loop devices is a
    failure, not a skip (STYLE 24)."""
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
