"""Image names through real mounts: `-o image=NAME:TAG` read-write works on the writable
clone @clone/NAME:TAG and `ro` on the image; bad names through `ctrfs commit` and the
commit xattr are refused and store nothing; a device whose @default was deleted mounts
again with an empty one."""
import errno
import os
import subprocess

import pytest
from fusemount import BIN, Mount, fsck
from test_fuse_mount_cli import assert_fails, run_mount

from ctrfs.device import Device
from ctrfs.engine import Engine
from ctrfs.format import constants as C

COMMIT = "trusted.ctrfs.commit"


def ctrfs(*args):
    return subprocess.run([str(BIN / "ctrfs"), *map(str, args)], capture_output=True, text=True, timeout=120)


def keys(image):
    """{key: kind} of the device's snapshot table (device not mounted)."""
    dev = Device(str(image), readonly=True)
    try:
        return {k: e["kind"] for k, e in Engine.open(dev).snapshots()}
    finally:
        dev.close()


def test_image_with_tag_rw_is_the_clone_ro_the_image(image, tmp_path):
    mnt = tmp_path / "mnt"
    with Mount(image, mnt) as m:
        (m / "f").write_bytes(b"in the image\n")
        r = ctrfs("commit", m.path, "myimg:1")
        assert r.returncode == 0 and r.stdout == "committed myimg:1\n", r
    with Mount(image, mnt, "image=myimg:1") as m:         # rw: the writable clone
        assert (m / "f").read_bytes() == b"in the image\n"
        (m / "g").write_bytes(b"in the clone\n")
        with open(m / "f", "ab") as f:
            f.write(b"changed in the clone\n")
    assert keys(image) == {b"@default": C.SNAP_WRITABLE, b"myimg:1": C.SNAP_IMAGE,
                           b"@clone/myimg:1": C.SNAP_WRITABLE}
    with Mount(image, mnt, "image=myimg:1", "ro") as m:   # ro: the image, unchanged
        assert sorted(os.listdir(m.path)) == ["f"]
        assert (m / "f").read_bytes() == b"in the image\n"
        with pytest.raises(OSError) as e:
            (m / "h").write_bytes(b"x")
        assert e.value.errno == errno.EROFS
    with Mount(image, mnt, "image=myimg:1") as m:         # the same clone again
        assert (m / "g").read_bytes() == b"in the clone\n"
        assert (m / "f").read_bytes() == b"in the image\nchanged in the clone\n"
    with Mount(image, mnt, "image=@clone/myimg:1", "ro") as m:   # the clone, by its key
        assert (m / "g").read_bytes() == b"in the clone\n"
    fsck(image)


def test_bad_names_through_the_mount_store_nothing(image, tmp_path):
    mnt = tmp_path / "mnt"
    bad = ["bad name!", ":", "x:", "bad\nname", "@evil", "@clone/myimg:1", "@default", "Upper",
           "x:" + "t" * 129]
    with Mount(image, mnt) as m:
        (m / "f").write_bytes(b"x")
        for name in bad:
            r = ctrfs("commit", m.path, name)
            assert r.returncode == 16 and len(r.stderr.splitlines()) == 1, (name, r)
            assert "bad image name" in r.stderr, r
            with pytest.raises(OSError) as e:             # straight through the xattr
                os.setxattr(m.path, COMMIT, name.encode())
            assert e.value.errno == errno.EINVAL, name
        os.setxattr(m.path, COMMIT, b"busybox")            # normalised by the mount too
        with pytest.raises(OSError) as e:
            os.setxattr(m.path, COMMIT, b"busybox:latest")
        assert e.value.errno == errno.EEXIST
        r = ctrfs("commit", m.path, "busybox")
        assert r.returncode == 1 and "'busybox:latest' exists" in r.stderr, r
    assert set(keys(image)) == {b"@default", b"busybox:latest"}
    fsck(image)


def test_mount_bad_image_name(image, tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    before = image.read_bytes()
    assert_fails(run_mount(image, mnt, "-o", "image=Bad!"), 1, "bad image name 'Bad!'")
    assert_fails(run_mount(image, mnt, "-o", "ro,image=x:"), 1, "empty tag")
    assert_fails(run_mount(image, mnt, "-o", "image=@evil"), 32, "no image or tree named '@evil'")
    assert image.read_bytes() == before
    assert not os.path.ismount(mnt)


def test_next_mount_after_rm_default_starts_an_empty_one(image, tmp_path):
    mnt = tmp_path / "mnt"
    with Mount(image, mnt) as m:
        (m / "old").write_bytes(b"lost with @default")
    r = ctrfs("rm", "--force", image, "@default")
    assert r.returncode == 0, r
    assert keys(image) == {}
    mnt.mkdir(exist_ok=True)
    assert_fails(run_mount(image, mnt, "-o", "ro"), 32, "no tree @default")
    with Mount(image, mnt, expect_log=["started an empty @default"]) as m:
        assert "started an empty @default" in m.log_text()
        assert os.listdir(m.path) == []
        (m / "new").write_bytes(b"in the new @default")
    with Mount(image, mnt) as m:                            # found again, no second log line
        assert (m / "new").read_bytes() == b"in the new @default"
        assert "@default" not in m.log_text()
    fsck(image)


def test_an_image_in_the_clone_slot_is_refused(image, tmp_path):
    """Older ctrfs accepted `ctrfs clone --image DEV @default @clone/myimg:1`; a rw mount
    of myimg:1 then mounted that image read-only without a word."""
    dev = Device(str(image))
    try:
        engine = Engine.open(dev)
        engine.clone(b"@default", b"myimg:1", C.SNAP_IMAGE)
        engine.clone(b"@default", b"@clone/myimg:1", C.SNAP_IMAGE)
        engine.commit()
    finally:
        dev.close()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_fails(run_mount(image, mnt, "-o", "image=myimg:1"), 32, "not the writable clone")
    with Mount(image, mnt, "image=myimg:1", "ro"):
        pass
