"""umount(8) waits for the daemon's last checkpoint (through /sbin/umount.fuse.ctrfs), and
root mounts are nodev unless -o dev."""
import errno
import hashlib
import os
import stat
import subprocess
import time

import pytest
from fusemount import MOUNT_CTRFS, Mount, mkfs, require_fuse

from ctrfs.unmount import RECORDS

BIN = MOUNT_CTRFS.parent
BIG = 256 << 20            # issue: at least 200 MiB dirty just before umount


def fsck_n(device):
    return subprocess.run([str(BIN / "fsck.ctrfs"), "-n", str(device)], capture_output=True, text=True)


def alive(pid):
    """Running (a zombie waiting for its reaper has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def mount_daemon(device, mnt, *opts):
    require_fuse()
    cmd = [str(MOUNT_CTRFS), str(device), str(mnt)] + (["-o", ",".join(opts)] if opts else [])
    subprocess.run(cmd, check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


def write_big(path):
    digest = hashlib.sha256()
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(BIG >> 20):
            block = chunk[i:] + chunk[:i]       # distinct blocks: nothing dedups away
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.parametrize("via", ["file", "loop"])
def test_umount_returns_after_last_checkpoint(tmp_path, loopdev, via):
    image = mkfs(tmp_path / "big.img", "1G")
    device = loopdev(image) if via == "loop" else image
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount_daemon(device, mnt, "cache=1G,commit=3600")   # all of it still dirty at umount
    try:
        want = write_big(mnt / "big")
    except BaseException:
        subprocess.run(["umount", str(mnt)])
        raise
    res = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stderr == "", res
    res = fsck_n(device)                                # at once: no waiting, no retry
    assert res.returncode == 0, res
    if via == "loop":
        subprocess.run(["losetup", "-d", device], check=True, capture_output=True)
        device = loopdev(image)
    with Mount(device, mnt, "ro") as m:
        with open(m / "big", "rb") as f:
            got = hashlib.file_digest(f, "sha256").hexdigest()
    assert got == want


def test_umount_helper_record_and_errors(image, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount_daemon(image, mnt)
    devno = os.major(os.stat(mnt).st_dev), os.minor(os.stat(mnt).st_dev)
    record = os.path.join(RECORDS, "%d:%d" % devno)
    pid = int(open(record).read().split()[0])
    assert alive(pid)                                   # the daemon, running
    subprocess.run(["umount", str(mnt)], check=True, timeout=120)
    assert not alive(pid)                               # gone when umount returned
    assert not os.path.exists(record)                   # the helper cleared the record
    helper = BIN / "umount.fuse.ctrfs"
    res = subprocess.run([str(helper), str(mnt)], capture_output=True, text=True)
    assert res.returncode == 32 and res.stderr.count("\n") == 1 and "not mounted" in res.stderr, res
    res = subprocess.run([str(helper), "-x", str(mnt)], capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.startswith("umount.fuse.ctrfs: "), res
    res = subprocess.run([str(helper), "-V"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("umount.fuse.ctrfs "), res


def test_lazy_umount_does_not_wait(image, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mount_daemon(image, mnt)
    busy = open(mnt / "held", "w")                      # keeps the lazily detached mount alive
    try:
        start = time.monotonic()
        subprocess.run(["umount", "-l", str(mnt)], check=True, timeout=30)
        assert time.monotonic() - start < 10
        assert not os.path.ismount(mnt)
    finally:
        busy.close()
    deadline = time.monotonic() + 60                    # then the daemon ends by itself
    while fsck_n(image).returncode == 8 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fsck_n(image).returncode == 0


@pytest.mark.parametrize("opt", ["", "dev"])
def test_nodev_unless_asked(image, tmp_path, opt):
    with Mount(image, tmp_path / "mnt", opt) as m:
        os.mknod(m / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        if opt == "dev":
            with open(m / "null", "wb") as f:
                f.write(b"gone")
        else:
            with pytest.raises(PermissionError) as exc:
                open(m / "null", "wb")
            assert exc.value.errno == errno.EACCES
