"""Fixtures of the tool tests: a fresh image (loop devices: tests/conftest.py)."""

import pytest
from toolrun import assert_ok, mkfs


@pytest.fixture
def image(tmp_path):
    """A fresh 64 MiB ctrfs loop file."""
    path = tmp_path / "fs.img"
    assert_ok(mkfs("-q", "-s", "64M", path))
    return path
