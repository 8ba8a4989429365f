"""Helpers of the fsck tests (a uniquely named module: every tests/ folder has a conftest)."""
import os
import stat
import subprocess
import sys
from pathlib import Path

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.fsck.checks import check_device

FSCK = Path(sys.executable).parent / "fsck.ctrfs"


def fsck(img, mode="n", verify_data=False):
    """fsck through the API on an in-memory image (-n opens it read-only)."""
    return check_device(MemoryDevice(img, readonly=mode == "n"), repair=mode, verify_data=verify_data)


def checks_of(result):
    return {check for check, _msg in result.problems}


def assert_fsck(img, expect_checks, *, verify_data=False, y_exit=1):
    """e2fsprogs style: -n finds it (exit 4) in the named checks without writing, -y
    repairs it (exit 1), and the next run is clean (exit 0)."""
    before = bytes(img)
    first = fsck(img, "n", verify_data)
    assert first.exit_code == 4, first
    assert set(expect_checks) <= checks_of(first), (expect_checks, first.problems)
    assert bytes(img) == before, "-n wrote to the device"
    fixed = fsck(img, "y", verify_data)
    assert fixed.exit_code == y_exit, (fixed, fixed.remaining)
    again = fsck(img, "n", verify_data)
    assert again.exit_code == 0, (again.problems, fixed.notes)
    return first, fixed


def mount(img, name=C.DEFAULT_TREE_NAME, writable=False):
    engine = Engine.open(MemoryDevice(img, readonly=not writable))
    return FileSystem(engine, name, writable=writable)


def listing(fs, ino=C.ROOT_INO, prefix=b""):
    """{path: (mode, nlink, size, content or target)} of a whole tree."""
    out = {}
    for name, child, _cookie in fs.readdir(ino):
        ind = fs.getattr(child)
        path = prefix + b"/" + name
        if ind.is_reg:
            body = fs.read(child, 0, ind.size)
        else:
            body = fs.readlink(child) if stat.S_ISLNK(ind.mode) else b""
        out[path] = (ind.mode, ind.nlink, ind.size, body)
        if ind.is_dir:
            out.update(listing(fs, child, path))
    return out


def run_cli(*args, **kw):
    """fsck.ctrfs as an admin runs it."""
    env = {k: v for k, v in os.environ.items() if k != "CTRFS_DEBUG"}
    return subprocess.run([str(FSCK), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120, **kw)
