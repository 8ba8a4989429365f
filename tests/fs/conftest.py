"""Fixtures of the FS-layer tests: a fresh file system on a MemoryDevice, reopen after a
commit (the hypothesis profiles come from tests/conftest.py)."""
import pytest

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.mkfs.geometry import make_filesystem


class Mounted:
    """A device, its engine and a FileSystem on one tree; `reopen` starts over from the
    bytes on the device, as after a restart."""

    def __init__(self, size=64 << 20):
        self.dev = MemoryDevice(bytearray(size))
        self.engine = make_filesystem(self.dev)
        self.name = C.DEFAULT_TREE_NAME
        self.fs = FileSystem(self.engine, self.name)

    def reopen(self, name=None):
        self.engine.close()
        self.engine = Engine.open(MemoryDevice(self.dev.data))
        self.name = name or self.name
        self.fs = FileSystem(self.engine, self.name)
        return self.fs

    def clone(self, image, tree):
        """Commit the current tree as `image`, clone it into writable `tree` and move there."""
        self.fs.commit(image=image)
        self.engine.clone(image, tree)
        self.name = tree
        self.fs = FileSystem(self.engine, tree)
        return self.fs

    def image(self, name):
        return FileSystem(self.engine, name, writable=False)


@pytest.fixture
def mounted():
    m = Mounted()
    yield m
    m.engine.close()


@pytest.fixture
def fs(mounted):
    return mounted.fs
