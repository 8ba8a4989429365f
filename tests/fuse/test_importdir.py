"""ctrfs.importdir: a real directory tree (made here on the host's file system) imported
in process, committed as an image, then compared file by file with the source through a
real read-only mount: types, modes (set-ID bits too), owners, sizes, contents, link
targets, device numbers, mtimes, xattrs and which names are hardlinks of each other."""
import os
import socket
import stat

from fusemount import Mount, fsck, mkfs

from ctrfs.device import Device
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.importdir import READ_CHUNK, import_directory

NS = 10 ** 9


def make_source(root):
    """A small rootfs with every kind of entry importdir handles; returns (files, bytes)."""
    os.makedirs(root / "etc" / "deep" / "er")
    os.makedirs(root / "dev")
    (root / "empty-dir").mkdir(mode=0o700)
    os.chmod(root / "etc" / "deep", 0o750)
    sizes = {"etc/empty": 0, "etc/small": 100, "etc/block": 4096, "etc/deep/odd": 4097,
             "etc/deep/er/big": 2 * READ_CHUNK + 12345}
    for rel, n in sizes.items():
        (root / rel).write_bytes(bytes((i * 7 + len(rel)) % 251 for i in range(n)))
    os.chmod(root / "etc" / "small", 0o4755)                   # set-uid survives
    os.chmod(root / "etc" / "block", 0o2640)
    os.chown(root / "etc" / "block", 1234, 5678)
    # three names of one file, across directories, and a second pair
    os.link(root / "etc" / "small", root / "etc" / "deep" / "small-link")
    os.link(root / "etc" / "small", root / "small-link2")
    os.link(root / "etc" / "deep" / "odd", root / "odd-link")
    os.symlink("small", root / "etc" / "rel-sym")
    os.symlink("/etc/deep/er/big", root / "abs-sym")
    os.symlink("nowhere/at/all", root / "dangling")
    os.lchown(root / "dangling", 42, 43)
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "dev" / "loop7", stat.S_IFBLK | 0o660, os.makedev(7, 7))
    os.mkfifo(root / "dev" / "fifo", 0o600)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(root / "dev" / "sock"))
    s.close()
    os.setxattr(root / "etc" / "small", "user.note", b"hello")
    os.setxattr(root / "etc" / "small", "user.empty", b"")
    os.setxattr(root / "etc" / "deep", "user.dir", b"\0binary\xff")
    os.setxattr(root / "etc" / "deep" / "odd", "trusted.t", b"x" * 300)
    # distinct times, set last (children first: creating an entry changes its dir's mtime)
    paths = sorted((os.path.join(top, n) for top, ds, fs in os.walk(root) for n in ds + fs),
                   key=len, reverse=True) + [str(root)]
    for i, p in enumerate(paths):
        t = (1_600_000_000 + i * 1000) * NS + i * 1111
        os.utime(p, ns=(t + 5, t), follow_symlinks=False)
    return len(sizes), sum(sizes.values())


def describe(root):
    """{path: fields} of a tree (lstat, nothing followed), and the hardlink groups."""
    out, groups = {}, {}
    for top, dirs, files in os.walk(root):
        for name in [None, *dirs, *files]:
            if name is None and top != str(root):
                continue
            path = top if name is None else os.path.join(top, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            row = dict(mode=oct(st.st_mode), uid=st.st_uid, gid=st.st_gid, nlink=st.st_nlink,
                       mtime=st.st_mtime_ns,
                       xattrs={x: os.getxattr(path, x, follow_symlinks=False)
                               for x in sorted(os.listxattr(path, follow_symlinks=False))})
            if stat.S_ISREG(st.st_mode):
                row["size"] = st.st_size
                with open(path, "rb") as f:
                    row["body"] = f.read()
                groups.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                row["target"] = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                row["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[rel] = row
    return out, sorted(sorted(g) for g in groups.values())


def test_import_directory_matches_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    want_files, want_bytes = make_source(src)
    image = mkfs(tmp_path / "fs.img", "64M")
    engine = Engine.open(Device(str(image)))
    try:
        fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
        assert import_directory(fs, str(src)) == (want_files, want_bytes)
        fs.commit(image=b"imported")
    finally:
        engine.close()
    fsck(image)
    want, want_links = describe(src)
    assert len(want) == 21 and [g for g in want_links if len(g) > 1] == [
        ["etc/deep/odd", "odd-link"], ["etc/deep/small-link", "etc/small", "small-link2"]]
    with Mount(image, tmp_path / "m", "image=imported", "ro", "dev") as m:
        have, have_links = describe(m.path)
    diff = {p: (want.get(p), have.get(p)) for p in want.keys() | have.keys() if want.get(p) != have.get(p)}
    assert not diff, diff
    assert have_links == want_links
