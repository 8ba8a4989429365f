"""Images through the mount: `ctrfs commit` (the trusted.ctrfs.commit xattr) turns the live
tree into an image and the mount goes on; image=NAME mounts a writable clone of it,
image=NAME,ro the image itself; each view shows exactly its version, and hardlinks stay
one inode in every view."""
import errno
import os
import subprocess

import pytest
from fusemount import BIN, Mount, assert_same_tree, fsck, manifest, mkfs

COMMIT = "trusted.ctrfs.commit"


def ctrfs(*args):
    return subprocess.run([str(BIN / "ctrfs"), *map(str, args)], capture_output=True, text=True, timeout=120)


def hardlinked(a, b):
    sa, sb = os.lstat(a), os.lstat(b)
    return sa.st_ino == sb.st_ino and sa.st_nlink == sb.st_nlink == 2


def write_v1(root):
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "a").write_bytes(b"version 1\n")
    (root / "dir" / "b").write_bytes(os.urandom(300000))
    (root / "h1").write_bytes(b"linked\n")
    os.link(root / "h1", root / "dir" / "h2")
    os.symlink("dir/b", root / "s")
    os.setxattr(root / "a", "user.v", b"1")


def write_v2(root):
    (root / "a").write_bytes(b"version 2\n")
    (root / "c").write_bytes(b"new in v2\n")
    os.unlink(root / "dir" / "b")
    with open(root / "h1", "ab") as f:
        f.write(b"appended in v2\n")
    os.chmod(root / "dir", 0o700)
    os.setxattr(root / "a", "user.v", b"2")


def test_commit_clone_and_image_views(image, tmp_path):
    mnt = tmp_path / "mnt"
    with Mount(image, mnt) as m:
        write_v1(m.path)
        v1 = manifest(m.path)
        r = ctrfs("commit", m.path, "img1")
        assert r.returncode == 0, r
        assert_same_tree(v1, manifest(m.path))         # the mount goes on, unchanged
        write_v2(m.path)
        v2 = manifest(m.path)
        os.setxattr(m.path, COMMIT, b"img2:v2")         # NAME:TAG, straight through the xattr
        (m / "after-img2").write_bytes(b"live only")
        live = manifest(m.path)
    fsck(image)

    with Mount(image, mnt, "image=img1") as m:           # a writable clone of img1
        assert_same_tree(v1, manifest(m.path))
        assert hardlinked(m / "h1", m / "dir" / "h2")
        (m / "clone-only").write_bytes(b"clone")
        with open(m / "dir" / "h2", "ab") as f:
            f.write(b"appended in the clone\n")
        assert hardlinked(m / "h1", m / "dir" / "h2")
        assert (m / "h1").read_bytes() == b"linked\nappended in the clone\n"
        v3 = manifest(m.path)
    with Mount(image, mnt, "image=img1", "ro") as m:     # the image itself, unchanged
        assert_same_tree(v1, manifest(m.path))
        assert hardlinked(m / "h1", m / "dir" / "h2")
    with Mount(image, mnt, "image=img2:v2", "ro") as m:
        assert_same_tree(v2, manifest(m.path))
        assert (m / "h1").read_bytes() == b"linked\nappended in v2\n"
        assert hardlinked(m / "h1", m / "dir" / "h2")
    with Mount(image, mnt) as m:                          # the default tree went on
        assert_same_tree(live, manifest(m.path))
        assert hardlinked(m / "h1", m / "dir" / "h2")
    with Mount(image, mnt, "image=img1") as m:           # the same clone again
        assert_same_tree(v3, manifest(m.path))
    fsck(image)
    r = ctrfs("images", image)
    assert r.returncode == 0, r
    for name in ("img1", "img2", "@clone/img1", "@default"):
        assert name in r.stdout, r.stdout


def test_commit_errors(image, tmp_path):
    mnt = tmp_path / "mnt"
    with Mount(image, mnt) as m:
        (m / "f").write_bytes(b"x")
        os.setxattr(m.path, COMMIT, b"taken")
        for value, code in ((b"taken", errno.EEXIST), (b"", errno.EINVAL), (b"/abs", errno.EINVAL),
                            (b"n" * 300, errno.EINVAL)):
            with pytest.raises(OSError) as e:
                os.setxattr(m.path, COMMIT, value)
            assert e.value.errno == code, value
        r = ctrfs("commit", m.path, "taken")
        assert r.returncode != 0 and "exists" in r.stderr, r
        os.setxattr(m / "f", COMMIT, b"only special on the root")   # an ordinary xattr elsewhere
        assert os.getxattr(m / "f", COMMIT) == b"only special on the root"
    with Mount(image, mnt, "image=taken", "ro") as m:
        assert (m / "f").read_bytes() == b"x"
        for call in (lambda: (m / "g").write_bytes(b"y"),
                     lambda: os.setxattr(m.path, COMMIT, b"new"),
                     lambda: os.setxattr(m / "f", "user.x", b"1"),
                     lambda: os.unlink(m / "f")):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.EROFS
        r = ctrfs("commit", m.path, "new")
        assert r.returncode != 0 and "read-only" in r.stderr, r
    fsck(image)


def test_commit_has_writes_of_files_still_open(tmp_path):
    """`ctrfs commit` of a mount takes the pages the kernel's writeback cache still holds
    for a file open for writing: the image has every write made before the command."""
    image = mkfs(tmp_path / "fs.img")
    mnt = tmp_path / "mnt"
    body = os.urandom(64 << 10)
    with Mount(image, mnt, "commit=3600") as m:
        with open(m / "open", "wb") as f:
            f.write(body)
            f.flush()
            r = ctrfs("commit", m.path, "snap")
            assert r.returncode == 0, r.stderr
            f.write(b"after the commit")
    with Mount(image, mnt, "image=snap", "ro") as m:
        assert (m / "open").read_bytes() == body
