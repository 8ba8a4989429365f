"""Fixtures of the fsck tests: one populated sample image, built once per session and
copied for each test (every case damages its own copy)."""
import pytest

from ctrfs.testing.corrupt import sample_image


@pytest.fixture(scope="session")
def sample_bytes():
    return bytes(sample_image())


@pytest.fixture
def img(sample_bytes):
    """A fresh, writable copy of the sample image."""
    return bytearray(sample_bytes)
