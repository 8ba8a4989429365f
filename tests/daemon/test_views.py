"""One daemon, several views, through the tools: clone=ID and its errors, the image
commands inside the daemon (same output and codes as offline, rm of a mounted tree
refused, a failed import leaving nothing), isolation and inode numbers of views, and the
ways a view ends (umount, fusermount3 -u, SIGTERM)."""
import os
import signal
import subprocess

from daemonrun import BIN, cleanup, daemon_pid, mount, umount, wait_gone
from fusemount import fsck, mkfs, require_fuse, wait_unlocked
from toolrun import assert_error, assert_ok, run


def mount_fails(device, mnt, opts, code, fragment):
    require_fuse()
    mnt.mkdir(exist_ok=True)
    res = subprocess.run([str(BIN / "mount.ctrfs"), str(device), str(mnt), "-o", opts],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    lines = res.stderr.splitlines()
    assert res.returncode == code and len(lines) == 1 and fragment in lines[0], res
    assert lines[0].startswith(f"mount.ctrfs: {device}: ") and not os.path.ismount(mnt), res


def test_views_tools_and_isolation(tmp_path):
    img = mkfs(tmp_path / "fs.img")
    base = mount(img, tmp_path / "base")
    try:
        (base / "f").write_text("image\n")
        assert_ok(run("ctrfs", "commit", base, "app:1"))
        a = mount(img, tmp_path / "a", "image=app:1,clone=one")
        b = mount(img, tmp_path / "b", "image=app:1,clone=two")
        ro = mount(img, tmp_path / "ro", "image=app:1", "ro")
        (a / "f").write_text("a\n")
        os.link(a / "f", a / "g")
        assert (b / "f").read_text() == (ro / "f").read_text() == "image\n"   # isolation
        assert not (b / "g").exists() and not (ro / "g").exists()
        inos = {os.stat(m / "f").st_ino for m in (a, b, ro)}
        assert len(inos) == 3 and os.stat(a / "g").st_ino == os.stat(a / "f").st_ino
        mount_fails(img, tmp_path / "x", "image=app:1,clone=one", 32, "in use")
        mount_fails(img, tmp_path / "x", "image=app:1,clone=-bad", 1, "bad clone id")
        mount_fails(img, tmp_path / "x", "clone=three", 1, "clone=ID goes with image=")
        mount_fails(img, tmp_path / "x", "image=nope:1", 32, "nope")
        # the image commands, inside the daemon
        assert_error(run("ctrfs", "rm", "--force", img, "@clone/app:1/one"), 8, "mounted at",
                     prog="ctrfs")
        bad = tmp_path / "bad.tar"
        bad.write_bytes(b"not a tar" * 1000)
        before = assert_ok(run("ctrfs", "images", img)).out
        assert_error(run("ctrfs", "import", img, bad, "--name", "bad:1"), 2, prog="ctrfs")
        assert assert_ok(run("ctrfs", "images", img)).out == before        # nothing stored
        assert_ok(run("ctrfs", "commit", img, "app:2", "--tree", "@clone/app:1/one"))
        assert_ok(run("ctrfs", "tag", img, "app:2", "app:latest"))
        listing = assert_ok(run("ctrfs", "images", img)).out
        assert "app:1/one" in listing and "latest" in listing
        pid = daemon_pid(base)
        umount(a)                                   # one view ends, the others go on
        assert (b / "f").read_text() == "image\n" and daemon_pid(b) == pid
        subprocess.run(["fusermount3", "-u", str(b)], check=True, timeout=30)
        os.kill(pid, signal.SIGTERM)                # ends every view, with its commit
        wait_gone(pid)
        assert not os.path.ismount(base) and not os.path.ismount(ro)
        wait_unlocked(img)
    finally:
        cleanup(tmp_path)
    fsck(img)
    assert assert_ok(run("ctrfs", "images", img)).out == listing   # offline: the same table
    a = mount(img, tmp_path / "a", "image=app:1,clone=one")
    try:
        assert (a / "g").read_text() == "a\n"
        app2 = mount(img, tmp_path / "app2", "image=app:2", "ro")
        assert (app2 / "g").read_text() == "a\n"
        umount(app2)
        umount(a)
    finally:
        cleanup(tmp_path)
    fsck(img)
