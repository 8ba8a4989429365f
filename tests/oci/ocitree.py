"""Helpers of the OCI import tests (a uniquely named module): real OCI layouts built with
umoci, layer tars made with tarfile, and trees described file by file (a directory on disk,
or an image read through FileSystem) so they can be compared."""
import hashlib
import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from toolrun import BIN, assert_error, assert_ok, run  # noqa: E402,F401

from ctrfs.device import Device  # noqa: E402
from ctrfs.engine import Engine  # noqa: E402
from ctrfs.filesystem import FileSystem  # noqa: E402
from ctrfs.format import constants as C  # noqa: E402

CAP = bytes.fromhex("0100000200200000000000000000000000000000")   # cap_net_bind_service+ep, v2


def sh(*cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    return proc.stdout


def mkfs(path, size="64M"):
    assert_ok(run("mkfs.ctrfs", "-q", "-s", size, path))
    return Path(path)


def ctrfs(*args, **kw):
    return run("ctrfs", *args, **kw)


def on_tty(*args):
    """Run `ctrfs ARGS` with stderr on a pseudo-terminal; what it wrote there."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.run([str(BIN / "ctrfs"), *map(str, args)], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=slave, timeout=120)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks)
    return b"".join(chunks).decode()


def fsck_clean(img):
    res = run("fsck.ctrfs", "-fn", img)
    assert res.rc == 0, res
    return res


def image_names(img):
    dev = Device(str(img), readonly=True)
    try:
        eng = Engine.open(dev)
        return {n: e["root"][1] for n, e in eng.snapshots()}
    finally:
        dev.close()


# ---- building images ---------------------------------------------------------------------------
class Layout:
    """An OCI layout made by umoci: new images, layers from directory changes or tars."""

    def __init__(self, root):
        self.root = Path(root)
        self.dir = self.root / "oci"
        sh("umoci", "init", "--layout", self.dir)
        self.n = 0

    def new(self, tag):
        sh("umoci", "new", "--image", f"{self.dir}:{tag}")

    def bundle(self, tag):
        self.n += 1
        b = self.root / f"bundle{self.n}"
        sh("umoci", "unpack", "--image", f"{self.dir}:{tag}", b)
        return b

    def repack(self, tag, bundle, new_tag=None):
        sh("umoci", "repack", "--image", f"{self.dir}:{new_tag or tag}", bundle)

    def add_tar(self, tag, tar_bytes, new_tag=None):
        self.n += 1
        p = self.root / f"layer{self.n}.tar"
        p.write_bytes(tar_bytes)
        args = ["umoci", "raw", "add-layer", "--image", f"{self.dir}:{tag}"]
        if new_tag:
            args += ["--tag", new_tag]
        sh(*args, p)

    def busybox(self, tag, more=None):
        """A new image of one layer: the busybox tree, and what more(rootfs) adds to it."""
        self.new(tag)
        b = self.bundle(tag)
        busybox_tree(b / "rootfs")
        if more is not None:
            more(b / "rootfs")
        self.repack(tag, b)

    def unpack(self, tag):
        """umoci's own rootfs of the image: the reference tree."""
        return self.bundle(tag) / "rootfs"


def busybox_tree(root):
    """A small busybox root file system with the features the tests look for."""
    root = Path(root)
    for d in ("bin", "sbin", "etc", "tmp", "usr/bin", "dev", "var/empty"):
        (root / d).mkdir(parents=True, exist_ok=True)
    sh("cp", "/bin/busybox", root / "bin/busybox")
    for applet in ("sh", "ls", "cat", "echo"):
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/hello.txt").write_text("hello\n")
    os.link(root / "etc/hello.txt", root / "etc/hello-link.txt")
    ping = root / "bin/ping"
    ping.write_bytes(b"\x7fELF pretend" * 100)
    os.setxattr(ping, "security.capability", CAP)
    os.setxattr(root / "etc/passwd", "user.origin", b"test")
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev/fifo", 0o600 | stat.S_IFIFO)
    os.chown(root / "var/empty", 1000, 1000)
    os.chmod(root / "tmp", 0o1777)
    with open(root / "var/sparse", "wb") as f:
        f.seek(5 << 20)
        f.write(b"end")
    (root / "usr/bin/big").write_bytes(os.urandom(3 << 20))
    return root


def tar_bytes(members, fmt=tarfile.PAX_FORMAT):
    """members: [(TarInfo, data bytes or None)] -> tar archive bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name, kind=tarfile.REGTYPE, *, mode=0o644, link="", mtime=1_600_000_000, uid=0, gid=0,
           pax=None, major=0, minor=0):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, mtime
    info.uid, info.gid, info.devmajor, info.devminor = uid, gid, major, minor
    if pax:
        info.pax_headers = pax
    return info


# ---- describing trees ----------------------------------------------------------------------------
def _row(mode, uid, gid, size, mtime_ns, rdev, content, link, xattrs):
    kind = stat.S_IFMT(mode)
    return dict(mode=mode, uid=uid, gid=gid, mtime_ns=mtime_ns,
                size=size if kind == stat.S_IFREG else None,
                rdev=rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0,
                content=content, link=link, xattrs=xattrs)


def describe_dir(top, skip_xattrs=()):
    """{path: row} and hardlink groups of a directory on disk (not following symlinks)."""
    top = Path(top)
    rows, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [""] + dirnames + filenames if dirpath == str(top) else dirnames + filenames:
            p = Path(dirpath) / name if name else top
            rel = "/" + str(p.relative_to(top)) if p != top else "/"
            st = os.lstat(p)
            content = link = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(p.read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                link = os.fsencode(os.readlink(p))
            xattrs = {os.fsencode(x): os.getxattr(p, x, follow_symlinks=False)
                      for x in os.listxattr(p, follow_symlinks=False) if x not in skip_xattrs}
            rows[rel] = _row(st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_rdev,
                             content, link, xattrs)
    return rows, sorted(sorted(g) for g in inodes.values() if len(g) > 1)


def describe_fs(fs):
    """The same description of an FS tree, read through FileSystem."""
    rows, inodes = {}, {}
    stack = [(C.ROOT_INO, "/")]
    while stack:
        ino, path = stack.pop()
        ind = fs.getattr(ino)
        content = link = None
        if ind.is_reg:
            content = hashlib.sha256(fs.read(ino, 0, ind.size)).hexdigest()
            if ind.nlink > 1:
                inodes.setdefault(ino, []).append(path)
        elif stat.S_ISLNK(ind.mode):
            link = bytes(fs.readlink(ino))
        xattrs = {bytes(x): fs.getxattr(ino, x) for x in fs.listxattr(ino)}
        rows[path] = _row(ind.mode, ind.uid, ind.gid, ind.size, ind.mtime_ns, ind.rdev, content, link, xattrs)
        if ind.is_dir:
            for name, child, _c in fs.readdir(ino):
                stack.append((child, (path.rstrip("/") + "/" + name.decode("utf-8", "surrogateescape"))))
    return rows, sorted(sorted(g) for g in inodes.values() if len(g) > 1)


def describe_image(img, name):
    dev = Device(str(img), readonly=True)
    try:
        eng = Engine.open(dev)
        return describe_fs(FileSystem(eng, name if isinstance(name, bytes) else name.encode(), writable=False))
    finally:
        dev.close()


def assert_same_tree(got, want, what=""):
    grows, glinks = got
    wrows, wlinks = want
    assert sorted(grows) == sorted(wrows), (what, set(grows) ^ set(wrows))
    for path in wrows:
        assert grows[path] == wrows[path], (what, path, grows[path], wrows[path])
    assert glinks == wlinks, what
