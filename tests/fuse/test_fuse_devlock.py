"""One writer per device, against a real read-write mount: whichever path the mount used
(the image file, a symlink, a loop device over it, a bind mount of it) and whichever the
other tool uses, every writer is refused with one line and its busy code, and after the
umount the device holds exactly what the mount wrote."""
import json
import os
import subprocess
import time

import pytest
from fusemount import BIN, Mount, fsck, require_fuse

from ctrfs.device import Device
from ctrfs.errors import DeviceError

PAIRS = [("loop", "file"), ("loop", "symlink"), ("loop", "bind"), ("file", "loop"), ("bind", "loop")]


def tool(prog, *args):
    env = {k: v for k, v in os.environ.items() if k != "CTRFS_DEBUG"}
    return subprocess.run([str(BIN / prog), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL)


def refused(res, prog, code, path):
    """Exit code, one stderr line `PROG: PATH...` naming the device, no traceback."""
    lines = res.stderr.splitlines()
    assert res.returncode == code and len(lines) == 1, res
    assert lines[0].startswith(f"{prog}: ") and path in lines[0], res
    assert "Traceback" not in res.stderr + res.stdout, res


def wait_released(path, timeout=60):
    """Until a read-write open of the device succeeds (the daemon commits after umount)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            Device(path).close()
            return
        except DeviceError:
            assert time.monotonic() < deadline, f"{path} still in use {timeout} s after umount"
            time.sleep(0.05)


def images(path):
    res = tool("ctrfs", "images", "--json", path)
    assert res.returncode == 0, res
    return {r["name"]: r["root"] for r in json.loads(res.stdout)}, res.stderr


@pytest.mark.parametrize("mounted,used", PAIRS)
def test_writers_refused_while_mounted(image, tmp_path, device_path, mounted, used):
    mount_path, path = device_path(image, mounted), device_path(image, used)
    other = tmp_path / "other"
    other.mkdir()
    data = os.urandom(100_000)
    with Mount(mount_path, tmp_path / "mnt") as m:
        (m / "f").write_bytes(data)
        assert tool("ctrfs", "commit", m.path, "app:1").returncode == 0
        committed, note = images(path)             # through the daemon: its live state
        assert set(committed) == {"@default", "app:1"} and note == ""
        # the daemon serves other trees, never the mounted one twice, and refuses to
        # delete it; tools that open the device themselves are refused
        refused(tool("mount.ctrfs", path, other), "mount.ctrfs", 32, path)
        refused(tool("mount.ctrfs", path, other, "-o", "ro"), "mount.ctrfs", 32, path)
        refused(tool("ctrfs", "rm", "--force", path, "@default"), "ctrfs", 8, path)
        assert tool("ctrfs", "clone", path, "app:1", "copy").returncode == 0
        assert tool("ctrfs", "rm", path, "copy").returncode == 0
        refused(tool("fsck.ctrfs", "-y", path), "fsck.ctrfs", 8, path)
        refused(tool("fsck.ctrfs", "-n", path), "fsck.ctrfs", 8, path)
        refused(tool("mkfs.ctrfs", "-q", "-f", path), "mkfs.ctrfs", 8, path)
        assert not os.path.ismount(other)
        assert (m / "f").read_bytes() == data
    fsck(image)
    after, note = images(image)
    assert after["app:1"] == committed["app:1"] and set(after) == set(committed) and note == ""
    with Mount(path, tmp_path / "mnt", "ro") as m:
        assert (m / "f").read_bytes() == data


def test_lock_survives_the_daemon_fork(image, tmp_path, device_path):
    """mount.ctrfs without -f forks into the daemon: the lock goes with it, and is
    released once the daemon has committed and exited."""
    require_fuse()
    loop, mnt = device_path(image, "loop"), tmp_path / "mnt"
    mnt.mkdir()
    res = tool("mount.ctrfs", loop, mnt)
    assert res.returncode == 0, res
    try:
        (mnt / "f").write_bytes(b"daemon")
        # through the daemon, whichever path names the device: its tree is live
        refused(tool("ctrfs", "clone", image, "@default", "copy"), "ctrfs", 16, str(image))
        refused(tool("mount.ctrfs", image, tmp_path), "mount.ctrfs", 32, str(image))
        refused(tool("fsck.ctrfs", "-n", image), "fsck.ctrfs", 8, str(image))
    finally:
        subprocess.run(["umount", str(mnt)], check=True, timeout=60)
        wait_released(image)
    res = tool("ctrfs", "clone", image, "@default", "copy")
    assert res.returncode == 0, res
    fsck(image)
