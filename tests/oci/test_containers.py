"""Containers on ctrfs: a busybox image built by umoci, imported, and run with chroot and
with `unshare --root` (own mount and pid namespaces) on writable clones.  Each clone keeps
its own writes across umount, fsck and remount; the image itself never changes."""
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuse"))   # the mount helpers

from fusemount import Mount, fsck  # noqa: E402
from ocitree import Layout, busybox_tree, ctrfs, describe_fs, mkfs  # noqa: E402
from toolrun import assert_ok  # noqa: E402

from ctrfs.device import Device  # noqa: E402
from ctrfs.engine import Engine  # noqa: E402
from ctrfs.filesystem import FileSystem  # noqa: E402

RUNNERS = {
    "chroot": lambda root, cmd: ["chroot", str(root), "/bin/sh", "-c", cmd],
    "unshare": lambda root, cmd: ["unshare", "--mount", "--pid", "--fork", f"--root={root}",
                                  "/bin/sh", "-c", cmd],
}


def image_tree(img, name):
    dev = Device(str(img), readonly=True)
    try:
        return describe_fs(FileSystem(Engine.open(dev), name, writable=False))
    finally:
        dev.close()


def test_two_runtimes_two_clones(tmp_path):
    src = Layout(tmp_path / "src")
    src.new("bb")
    b = src.bundle("bb")
    busybox_tree(b / "rootfs")
    (b / "rootfs" / "root").mkdir()
    src.repack("bb", b)
    img = mkfs(tmp_path / "s.img", "128M")
    assert_ok(ctrfs("import", img, f"oci:{src.dir}:bb", "--name", "bb:1", "-q"))
    pristine = image_tree(img, b"bb:1")
    cmd = "echo $0 > /root/who; echo shared > /etc/motd; ls /bin/busybox; cat /etc/hello.txt"
    for runner, how in RUNNERS.items():
        # one writable clone per runtime: @clone/bb:1 and a named clone for the second
        if runner != "chroot":
            assert_ok(ctrfs("clone", img, "bb:1", "second"))
        opt = "image=bb:1" if runner == "chroot" else "image=second"
        with Mount(img, tmp_path / "mnt", opt) as m:
            out = subprocess.run(how(m.path, cmd.replace("$0", runner)), capture_output=True,
                                 text=True, timeout=60)
            assert out.returncode == 0, out
            assert out.stdout == "/bin/busybox\nhello\n"
    fsck(img)
    with Mount(img, tmp_path / "mnt", "image=bb:1") as m:          # the clone kept its writes
        assert (m / "root" / "who").read_text() == "chroot\n"
    with Mount(img, tmp_path / "mnt", "image=second") as m:
        assert (m / "root" / "who").read_text() == "unshare\n"
        assert (m / "etc" / "motd").read_text() == "shared\n"
    assert image_tree(img, b"bb:1") == pristine                     # the image never changed
    fsck(img)
