"""mount.ctrfs as admins run it: detaching into the background, mount(8) and fstab through
/sbin/mount.ctrfs, and one stderr line with mount(8)'s exit code for each bad input."""
import os
import subprocess

import pytest
from fusemount import MOUNT_CTRFS, Mount, fsck, require_fuse, wait_unlocked

from ctrfs.mkfs.probe import mountinfo


def run_mount(*args, timeout=60):
    require_fuse()
    env = {k: v for k, v in os.environ.items() if k != "CTRFS_DEBUG"}
    return subprocess.run([str(MOUNT_CTRFS), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def assert_fails(res, code, fragment):
    assert res.returncode == code, res
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mount.ctrfs: "), res
    assert fragment in lines[0], res
    assert "Traceback" not in res.stderr


def entry(mountpoint):
    real = os.path.realpath(mountpoint)
    rows = [r for r in mountinfo() if r[2] == real]
    return rows[-1] if rows else None


def mount_options(mountpoint):
    real = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if pre.split()[4] == real:
                found = set(pre.split()[5].split(",")) | set(post.split()[2].split(","))
    return found


def unmount_daemon(mnt, image):
    subprocess.run(["umount", str(mnt)], check=True, timeout=60)
    wait_unlocked(image)
    assert not os.path.ismount(mnt)


def test_daemon_mode(image, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = run_mount(image, mnt)
    try:
        assert res.returncode == 0 and res.stderr == "" and res.stdout == "", res
        assert os.path.ismount(mnt)                    # there when the command returns
        (mnt / "f").write_bytes(b"written to a daemon")
        devno, source, _mnt, fstype = entry(mnt)
        assert (source, fstype) == (str(image), "fuse.ctrfs")
        opts = mount_options(mnt)
        assert {"allow_other", "default_permissions", "rw"} <= opts
        assert "nodev" in opts and "nosuid" not in opts  # root mounts: suid, and nodev for strangers' images
        with open(f"/sys/class/bdi/{devno}/read_ahead_kb") as f:
            assert int(f.read()) == 1024
        busy = run_mount(image, tmp_path)             # the daemon holds the device
        assert_fails(busy, 32, "in use")
    finally:
        if os.path.ismount(mnt):
            unmount_daemon(mnt, image)
    fsck(image)
    with Mount(image, mnt, "ro") as m:
        assert (m / "f").read_bytes() == b"written to a daemon"
        assert "ro" in mount_options(mnt)


def test_mount_8_and_fstab(image, tmp_path, sbin_mount_ctrfs):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "ctrfs", str(image), str(mnt), "-o", "noatime,nosuid,fsync=honor"],
                         capture_output=True, text=True, timeout=60)
    try:
        assert res.returncode == 0, res
        assert entry(mnt)[3] == "fuse.ctrfs"
        assert {"noatime", "nosuid"} <= mount_options(mnt)
        (mnt / "via-mount8").write_bytes(b"1")
    finally:
        unmount_daemon(mnt, image)
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{image} {mnt} ctrfs defaults,noauto,_netdev,nofail,x-systemd.automount,ro 0 0\n")
    res = subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True, text=True, timeout=60)
    try:
        assert res.returncode == 0, res
        assert (mnt / "via-mount8").read_bytes() == b"1"
        assert "ro" in mount_options(mnt)
    finally:
        unmount_daemon(mnt, image)
    res = subprocess.run(["mount", "-t", "ctrfs", str(image), str(mnt), "-o", "no-such-option"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "no-such-option" in res.stderr, res
    fsck(image)


@pytest.fixture
def mnt(tmp_path):
    path = tmp_path / "mnt"
    path.mkdir()
    return path


def test_options(image, mnt):
    with Mount(image, mnt, "cache=64M", "commit=2", "max_read=4096", "relatime", "x-gvfs-hide") as m:
        (m / "f").write_bytes(b"x")
    res = run_mount("-sv", "-n", "-o", "bogus,whatever=1", image, mnt)     # -s: unknown options pass
    try:
        assert res.returncode == 0, res
        assert (mnt / "f").read_bytes() == b"x"
    finally:
        unmount_daemon(mnt, image)


def test_bad_input(image, mnt, tmp_path):
    zeros = tmp_path / "zeros.img"
    zeros.write_bytes(bytes(64 << 20))
    afile = tmp_path / "afile"
    afile.write_bytes(b"")
    before = image.read_bytes()
    cases = [
        ((), 1, "usage"),
        ((image,), 1, "usage"),
        ((image, mnt, "extra"), 1, "usage"),
        ((image, mnt, "-x"), 1, "unknown flag -x"),
        ((image, mnt, "-o"), 1, "needs an argument"),
        ((image, mnt, "-o", "bogus"), 1, "unknown or bad option 'bogus'"),
        ((image, mnt, "-o", "fsync=sometimes"), 1, "fsync=sometimes"),
        ((image, mnt, "-o", "remount,ro"), 1, "not supported"),
        ((image, mnt, "-o", "cache=lots"), 1, "bad cache size"),
        ((image, mnt, "-o", "commit=-1"), 1, "bad commit interval"),
        ((tmp_path / "missing.img", mnt), 32, "no such file or device"),
        ((zeros, mnt), 32, "not a ctrfs file system"),
        ((tmp_path, mnt), 32, "not a regular file or block device"),
        ((image, tmp_path / "nowhere"), 32, "mount point does not exist"),
        ((image, afile), 32, "not a directory"),
        ((image, mnt, "-o", "image=nope"), 32, "no image or tree named 'nope'"),
        ((image, mnt, "-o", "ro,image=nope"), 32, "no image or tree named 'nope'"),
    ]
    for args, code, fragment in cases:
        res = run_mount(*args)
        assert_fails(res, code, fragment)
        assert not os.path.ismount(mnt)
    assert image.read_bytes() == before                  # nothing written
    fsck(image)


def test_block_device(image, mnt, tmp_path, loopdev):
    """A real block device: O_EXCL keeps a second mount off it; a read-only device mounts
    only read-only."""
    dev = loopdev(image)
    with Mount(dev, mnt) as m:
        assert entry(mnt)[1] == dev
        data = os.urandom(3 << 20)
        (m / "on-a-loop-device").write_bytes(data)
        other = tmp_path / "other"
        other.mkdir()
        assert_fails(run_mount(dev, other), 32, "busy")
    fsck(dev)
    ro = loopdev(image, readonly=True)
    assert_fails(run_mount(ro, mnt), 32, "read-only")
    with Mount(ro, mnt, "ro") as m:
        assert (m / "on-a-loop-device").read_bytes() == data
