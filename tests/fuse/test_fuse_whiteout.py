"""RENAME_WHITEOUT as ext4 does it, and ctrfs as the upper layer of a kernel overlayfs (which
uses it).  ext4 on a loop file is the reference, in the same test."""
import ctypes
import errno
import os
import subprocess

import pytest
from fusemount import Mount, fsck

RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
AT_FDCWD = -100
libc = ctypes.CDLL(None, use_errno=True)


def renameat2(old, new, flags):
    if libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@pytest.fixture
def ext4(tmp_path):
    img, mnt = tmp_path / "ext4.img", tmp_path / "ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img), "64M"], check=True, capture_output=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def whiteout_cases(root):
    """The same renames on any file system; returns what each left behind."""
    out = {}
    (root / "f").write_text("moved")
    (root / "d").mkdir()
    (root / "d" / "inner").write_text("in d")
    (root / "busy").write_text("target")
    renameat2(root / "f", root / "g", RENAME_WHITEOUT)
    renameat2(root / "d", root / "e", RENAME_WHITEOUT | RENAME_NOREPLACE)
    for flags in (RENAME_WHITEOUT | RENAME_EXCHANGE, RENAME_NOREPLACE | RENAME_WHITEOUT):
        try:
            renameat2(root / "g", root / "busy", flags)
            out[flags] = "ok"
        except OSError as exc:
            out[flags] = errno.errorcode[exc.errno]
    for name in ("f", "d"):
        st = os.lstat(root / name)
        out[name] = (oct(st.st_mode), st.st_rdev, st.st_uid, st.st_gid, st.st_nlink, st.st_size)
    out["g"] = (root / "g").read_text()
    out["e"] = sorted(os.listdir(root / "e"))
    return out


def test_rename_whiteout_as_ext4(image, tmp_path, ext4):
    want = whiteout_cases(ext4)
    assert want["f"][:2] == (oct(0o020000), 0)         # a char device 0:0, mode 0
    with Mount(image, tmp_path / "mnt") as m:
        assert whiteout_cases(m.path) == want
    fsck(image)
    with Mount(image, tmp_path / "mnt", "ro") as m:
        assert os.lstat(m / "f").st_mode == 0o020000 and os.lstat(m / "d").st_rdev == 0


def test_overlayfs_upper_on_ctrfs(image, tmp_path):
    lower, merged = tmp_path / "lower", tmp_path / "merged"
    (lower / "dir").mkdir(parents=True)
    (lower / "gone").write_text("lower file")
    (lower / "dir" / "kept").write_text("lower kept")
    merged.mkdir()
    with Mount(image, tmp_path / "mnt") as m:
        (m / "upper").mkdir()
        (m / "work").mkdir()
        opts = f"lowerdir={lower},upperdir={m / 'upper'},workdir={m / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
        try:
            (merged / "gone").unlink()                 # a whiteout in the upper layer
            os.rename(merged / "dir" / "kept", merged / "moved")   # copied up, whiteout left
            (merged / "new").write_text("upper file")
            assert sorted(os.listdir(merged)) == ["dir", "moved", "new"]
            assert os.listdir(merged / "dir") == []
        finally:
            subprocess.run(["umount", str(merged)], check=True)
        st = os.lstat(m / "upper" / "gone")
        assert (st.st_mode & 0o170000, st.st_rdev) == (0o020000, 0)
    fsck(image)
    with Mount(image, tmp_path / "mnt") as m:           # the upper layer survives a remount
        opts = f"lowerdir={lower},upperdir={m / 'upper'},workdir={m / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
        try:
            assert sorted(os.listdir(merged)) == ["dir", "moved", "new"]
            assert os.listdir(merged / "dir") == []
            assert (merged / "moved").read_text() == "lower kept"
        finally:
            subprocess.run(["umount", str(merged)], check=True)
