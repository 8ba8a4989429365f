"""Run programs from the mount, as a container runtime does: a static busybox copied in,
its applet symlinks, and a shell in a chroot doing file work inside the mount."""
import os
import shutil
import subprocess

from fusemount import Mount, fsck

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "ls", "cat", "echo", "mkdir", "rm", "mv", "ln", "find", "sort", "wc", "sha256sum",
           "cp", "chmod", "stat", "du", "tar"]


CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


def chroot(root, script):
    return subprocess.run([CHROOT, str(root), "/bin/sh", "-c", script], capture_output=True,
                          text=True, timeout=120, env={"PATH": "/bin", "HOME": "/"})


def install_busybox(root):
    assert os.path.exists(BUSYBOX), "busybox-static is missing (apt install busybox-static)"
    (root / "bin").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for name in APPLETS:
        os.symlink("busybox", root / "bin" / name)
    (root / "tmp").mkdir(mode=0o1777)


def test_chroot_busybox(image, tmp_path):
    mnt = tmp_path / "mnt"
    with Mount(image, mnt) as m:
        install_busybox(m.path)
        r = subprocess.run([CHROOT, str(m.path), "/bin/busybox", "sh", "-c", "echo hi"],
                           capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, "hi\n"), r
        r = chroot(m.path, """
            set -e
            mkdir -p /work/a/b
            echo hello > /work/a/b/f
            ln /work/a/b/f /work/hard
            ln -s a/b/f /work/soft
            cat /work/soft
            mv /work/a /work/moved
            chmod 600 /work/hard
            stat -c '%h %a' /work/hard
            cd /work && tar cf /tmp/t.tar moved && rm -r moved && tar xf /tmp/t.tar
            find /work | sort
            sha256sum /bin/busybox
        """)
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert lines[:2] == ["hello", "2 600"]
        assert lines[2:7] == ["/work", "/work/hard", "/work/moved", "/work/moved/b", "/work/moved/b/f"]
        digest = subprocess.run(["sha256sum", BUSYBOX], capture_output=True, text=True).stdout.split()[0]
        assert lines[-1].split()[0] == digest
    fsck(image)
    with Mount(image, mnt, "ro") as m:                    # read-only images run programs too
        r = chroot(m.path, "cat /work/moved/b/f; ls /bin | wc -l; echo x > /tmp/y")
        assert r.stdout.split()[:2] == ["hello", str(len(APPLETS) + 1)], r
        assert r.returncode != 0 and "Read-only file system" in r.stderr, r
