"""Containers on ctrfs: a busybox image built by umoci, imported, and run with chroot and
with `unshare --root` (own mount and pid namespaces) on writable clones.  Each clone keeps
its own writes across umount, fsck and remount; the image itself never changes."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuse"))   # the mount helpers

from fusemount import Mount, fsck  # noqa: E402
from ocitree import Layout, ctrfs, describe_fs, mkfs  # noqa: E402
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


def busybox_image(tmp_path):
    """A device holding bb:1, a busybox image built by umoci (with an empty /root)."""
    src = Layout(tmp_path / "src")
    src.busybox("bb", lambda root: (root / "root").mkdir())
    img = mkfs(tmp_path / "s.img", "128M")
    assert_ok(ctrfs("import", img, f"oci:{src.dir}:bb", "--name", "bb:1", "-q"))
    return img


def test_two_runtimes_two_clones(tmp_path):
    img = busybox_image(tmp_path)
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


def build_deb(tmp_path):
    """A real, small .deb made by dpkg-deb: a script, a doc file, a hardlink."""
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: ctrfs-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: ctrfs <ctrfs@localhost>\n"
        "Description: a package installed by the ctrfs tests\n")
    (pkg / "usr" / "bin").mkdir(parents=True)
    (pkg / "usr" / "bin" / "ctrfs-hello").write_text("#!/bin/sh\necho hello from a package\n")
    (pkg / "usr" / "bin" / "ctrfs-hello").chmod(0o755)
    (pkg / "usr" / "share" / "doc" / "ctrfs-hello").mkdir(parents=True)
    (pkg / "usr" / "share" / "doc" / "ctrfs-hello" / "README").write_text("docs\n")
    import os
    os.link(pkg / "usr" / "bin" / "ctrfs-hello", pkg / "usr" / "bin" / "ctrfs-hello2")
    deb = tmp_path / "ctrfs-hello.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(deb)], check=True,
                   capture_output=True)
    return deb


def test_package_install_commit_export(tmp_path):
    """dpkg -i into a writable clone, commit, export as OCI: umoci unpacks the clone's tree,
    and the new layer holds only what the install wrote."""
    import json
    import tarfile

    from ocitree import assert_same_tree, describe_dir, sh

    src = Layout(tmp_path / "src")
    def dpkg_dirs(root):
        for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "usr/share/doc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "var/lib/dpkg/status").write_text("")

    src.busybox("bb", dpkg_dirs)
    img = mkfs(tmp_path / "s.img", "128M")
    assert_ok(ctrfs("import", img, f"oci:{src.dir}:bb", "--name", "bb:1", "-q"))
    deb = build_deb(tmp_path)
    with Mount(img, tmp_path / "mnt", "image=bb:1") as m:
        res = subprocess.run(["dpkg", f"--root={m.path}", "--force-not-root", "--force-depends",
                              "--force-script-chrootless", "--log=/dev/null", "-i", str(deb)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res
        out = subprocess.run(["chroot", str(m.path), "/usr/bin/ctrfs-hello"], capture_output=True, text=True)
        assert out.stdout == "hello from a package\n", out
        assert_ok(ctrfs("commit", m.path, "bb:2"))
        clone = describe_dir(m.path)
    fsck(img)
    out = tmp_path / "out"
    assert_ok(ctrfs("export", "--format", "oci", img, "bb:2", out, "-q"))
    sh("umoci", "unpack", "--image", f"{out}:2", tmp_path / "unpacked")
    assert_same_tree(describe_dir(tmp_path / "unpacked" / "rootfs"), clone, "umoci unpack vs the clone")
    index = json.loads((out / "index.json").read_text())
    blob = lambda d: out / "blobs" / "sha256" / d.split(":")[1]  # noqa: E731
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    assert len(manifest["layers"]) == 2
    # the base layer comes back as it was imported (its recipe), the new one from the diff
    from test_roundtrip import manifest_and_config
    _m, src_config = manifest_and_config(tmp_path / "src" / "oci", "bb")
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    assert config["rootfs"]["diff_ids"][0] == src_config["rootfs"]["diff_ids"][0]
    with tarfile.open(blob(manifest["layers"][1]["digest"])) as tf:
        names = {n.rstrip("/") for n in tf.getnames()}
    assert {"usr/bin/ctrfs-hello", "usr/bin/ctrfs-hello2", "usr/share/doc/ctrfs-hello/README"} <= names
    assert all(n in (".", "var", "var/lib") or n.startswith(("usr", "var/lib/dpkg")) for n in names), " ".join(sorted(names))
    assert "bin/busybox" not in names


PODMAN_CONF = """[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


@pytest.fixture
def podman(tmp_path):
    """podman with its own storage and a containers.conf that works on this machine kind:
    runc (crun refuses hybrid cgroups), ulimits under the hard limits, no network. Its runroot
    must be under 50 characters, so it lives in a short directory of /tmp, not in tmp_path."""
    conf = tmp_path / "containers.conf"
    conf.write_text(PODMAN_CONF)
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    runroot = tempfile.mkdtemp(prefix="ctrfs-pod-", dir="/tmp")

    def run(*args):
        return subprocess.run(["podman", "--root", str(tmp_path / "storage"), "--runroot", runroot,
                               "--storage-driver", "vfs", *map(str, args)],
                              capture_output=True, text=True, timeout=120, env=env)
    yield run
    shutil.rmtree(runroot, ignore_errors=True)


def test_podman_run_rootfs(tmp_path, podman):
    """podman runs the image on a writable clone (its writes stay in the clone) and on the
    read-only image itself with `:O` (podman's own overlay on top, nothing written)."""
    img = busybox_image(tmp_path)
    pristine = image_tree(img, b"bb:1")
    with Mount(img, tmp_path / "mnt", "image=bb:1") as m:
        out = podman("run", "--rm", "--rootfs", m.path, "/bin/sh", "-c",
                     "echo podman > /root/who; cat /etc/hello.txt; echo $$")
        assert out.returncode == 0, out
        assert out.stdout == "hello\n1\n"                   # the container's shell is pid 1
    fsck(img)
    with Mount(img, tmp_path / "mnt", "image=bb:1") as m:
        assert (m / "root" / "who").read_text() == "podman\n"
    with Mount(img, tmp_path / "mnt", "ro,image=bb:1") as m:
        out = podman("run", "--rm", "--rootfs", f"{m.path}:O", "/bin/sh", "-c",
                     "echo x > /root/who; cat /root/who; ls /root")
        assert out.returncode == 0, out
        assert out.stdout == "x\nwho\n"
        assert not (m / "root" / "who").exists()
    assert image_tree(img, b"bb:1") == pristine
    fsck(img)
