"""Eight containers at once on one device: writable clones of two images (four each, named
by clone=ID), run with chroot and `unshare --root`, all served by the device's one daemon,
while an image is imported and two running containers are committed through it.  Each
tree ends with exactly its own changes (file by file against a model), the kernel sees
distinct inodes per tree (hardlinks stay one), the images never change, and a kill -9 of
the daemon loses only what was not committed: after a remount every tree and image is
back and fsck is clean."""
import os
import signal
import subprocess

from daemonrun import BIN, assert_model, cleanup, daemon_pid, model, mount, sha, umount, wait_gone
from fusemount import fsck, wait_unlocked
from ocitree import Layout, busybox_tree, ctrfs, mkfs
from toolrun import assert_ok

RUNNERS = [
    lambda root, cmd: ["chroot", str(root), "/bin/sh", "-c", cmd],
    lambda root, cmd: ["unshare", "--mount", "--pid", "--fork", f"--root={root}", "/bin/sh", "-c", cmd],
]
N = 8
FILES = 30


def build_layout(tmp_path):
    """Images a, b (busybox, told apart by /etc/which) and c (busybox and 8 MiB more)."""
    src = Layout(tmp_path / "src")
    for tag in ("a", "b", "c"):
        src.new(tag)
        b = src.bundle(tag)
        root = busybox_tree(b / "rootfs")
        (root / "root").mkdir()
        (root / "etc/which").write_text(tag.upper() + "\n")
        if tag == "c":
            (root / "opt").mkdir()
            for k in range(64):
                (root / "opt" / f"blob{k}").write_bytes(os.urandom(128 << 10))
        src.repack(tag, b)
    return src


def script(i):
    """Phase one of container i: its own files, the same paths as every other, a hardlink,
    an image file removed.  Busybox applets by name (the image links only sh, ls, cat, echo)."""
    return (f"umask 022; echo c{i} > /root/who && /bin/busybox ln /root/who /root/who.link && "
            f"echo motd-{i} > /etc/motd && /bin/busybox mkdir /data && n=0; "
            f"while [ $n -lt {FILES} ]; do echo $n-{i} > /data/f$n; n=$((n+1)); done; "
            "/bin/busybox rm /etc/hello-link.txt && cat /etc/which")


def expected(pristine, i):
    rows, links = dict(pristine[0]), [g for g in pristine[1] if "/etc/hello-link.txt" not in g]
    reg = 0o100644
    rows["/root/who"] = rows["/root/who.link"] = (reg, 0, 0, sha(f"c{i}\n".encode()))
    rows["/etc/motd"] = (reg, 0, 0, sha(f"motd-{i}\n".encode()))
    rows["/data"] = (0o40755, 0, 0, None)
    for n in range(FILES):
        rows[f"/data/f{n}"] = (reg, 0, 0, sha(f"{n}-{i}\n".encode()))
    del rows["/etc/hello-link.txt"]
    return rows, sorted(links + [["/root/who", "/root/who.link"]])


def test_eight_containers_one_daemon(tmp_path):
    try:
        src = build_layout(tmp_path)
        img = mkfs(tmp_path / "s.img", "384M")
        for tag in ("a", "b"):
            assert_ok(ctrfs("import", img, f"oci:{src.dir}:{tag}", "--name", f"{tag}:1", "-q"))
        mnts = [tmp_path / f"c{i}" for i in range(N)]
        images = {"a": tmp_path / "img-a", "b": tmp_path / "img-b"}

        def mount_all():
            for i, m in enumerate(mnts):                 # the first starts the daemon
                opts = [f"image={'ab'[i % 2]}:1", f"clone=c{i}"] + (["commit=3600"] if i == 0 else [])
                mount(img, m, *opts)
            for tag, m in images.items():
                mount(img, m, f"image={tag}:1", "ro")

        mount_all()
        pid = daemon_pid(mnts[0])
        assert {daemon_pid(m) for m in mnts + list(images.values())} == {pid}   # one daemon
        pristine = {tag: model(m) for tag, m in images.items()}
        for i, m in enumerate(mnts):                                # a fresh clone is its image
            assert_model(model(m), pristine["ab"[i % 2]], f"clone c{i}")

        # phase one: eight containers at once, and an import of c through the daemon
        imp = subprocess.Popen([str(BIN / "ctrfs"), "import", str(img), f"oci:{src.dir}:c", "--name", "c:1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs = [subprocess.Popen(RUNNERS[i % 2](m, script(i)), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i, m in enumerate(mnts)]
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and out == "ab"[i % 2].upper() + "\n", (i, out, err)
        out, err = imp.communicate(timeout=300)
        assert imp.returncode == 0 and out.startswith("imported c:1: 1 layer (1 new), root "), (out, err)

        # two running containers are committed (a shell holds each tree meanwhile)
        running = [subprocess.Popen(RUNNERS[0](mnts[k], "cat /etc/which; read x"), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True) for k in (0, 1)]
        for k, r in zip((0, 1), running):
            assert r.stdout.readline() == "ab"[k].upper() + "\n"
            assert_ok(ctrfs("commit", mnts[k], f"snap{k}:1"))
        for r in running:
            r.communicate("\n", timeout=30)

        want = [expected(pristine["ab"[i % 2]], i) for i in range(N)]
        for i, m in enumerate(mnts):
            assert_model(model(m), want[i], f"container c{i}")
        for tag, m in images.items():
            assert_model(model(m), pristine[tag], f"image {tag}")
        inos = {os.stat(m / "bin/busybox").st_ino for m in mnts + list(images.values())}
        assert len(inos) == N + 2                  # one file per tree for the kernel

        # phase two, never committed: then kill -9 of the daemon
        for m in mnts:
            (m / "root" / "late").write_text("lost\n")
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        for m in mnts + list(images.values()):
            subprocess.run(["umount", "-l", str(m)], check=True, capture_output=True, timeout=30)
        wait_unlocked(img)
        fsck(img)

        mount_all()
        for i, m in enumerate(mnts):
            assert_model(model(m), want[i], f"container c{i} after kill -9")
        for tag, m in images.items():
            assert_model(model(m), pristine[tag], f"image {tag} after kill -9")
        snaps = [tmp_path / f"snap{k}" for k in (0, 1)] + [tmp_path / "img-c"]
        for k in (0, 1):
            assert_model(model(mount(img, snaps[k], f"image=snap{k}:1", "ro")), want[k], f"snap{k}")
        c = mount(img, snaps[2], "image=c:1", "ro")
        assert (c / "etc/which").read_text() == "C\n" and len(os.listdir(c / "opt")) == 64
        pid = daemon_pid(mnts[0])
        for m in mnts + list(images.values()) + snaps:
            umount(m)
        wait_gone(pid)                              # the last view gone: the daemon exits
        fsck(img)
    finally:
        cleanup(tmp_path)
