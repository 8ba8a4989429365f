"""POSIX behaviour through a real mount: every operation the FUSE layer implements, with
its error cases.  One mount per module (each test works in its own directory); the
unmount at the end checks the daemon's exit code and log."""
import ctypes
import errno
import hashlib
import mmap
import os
import stat
import subprocess
import tempfile
import threading
import time

import pytest
from fusemount import Mount, assert_same_tree, fsck, manifest, mkfs

AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(scope="module")
def mnt(tmp_path_factory):
    """One mount for the module.  At the end, what the tests left must survive: umount,
    fsck clean, remount, the same tree."""
    base = tmp_path_factory.mktemp("posix")
    # other uids must reach the mount point: not under pytest's 0700 directories
    top = tempfile.mkdtemp(prefix="ctrfs-posix-")
    os.chmod(top, 0o755)
    image = mkfs(base / "fs.img")
    m = Mount(image, os.path.join(top, "mnt"))
    m.log_path = base / "mount.log"
    m.start()
    try:
        yield m
        left = manifest(m.path)
        m.stop()
        fsck(image)
        with Mount(image, m.path) as again:
            assert_same_tree(left, manifest(again.path))
        fsck(image)
    finally:
        try:
            m.stop()
        finally:
            for path in (m.path, top):       # rmdir, not rmtree: never into a live mount
                try:
                    os.rmdir(path)
                except OSError:
                    pass


@pytest.fixture
def d(mnt, request):
    path = mnt.path / request.node.name[:200]
    path.mkdir()
    return path


def err(exc_info):
    return exc_info.value.errno


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, atime, mtime, follow=True):
    ts = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    if libc.utimensat(AT_FDCWD, os.fsencode(path), ts, 0 if follow else 0x100) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def as_user(uid, gid, code):
    """Run Python code as another user (default_permissions + allow_other in action)."""
    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return subprocess.run(["python3", "-c", code], preexec_fn=drop, capture_output=True, text=True, timeout=60)


# ---- files -------------------------------------------------------------------------------
def test_create_write_read(d):
    p = d / "f"
    p.write_bytes(b"hello world")
    assert p.read_bytes() == b"hello world"
    st = p.stat()
    assert stat.S_ISREG(st.st_mode) and st.st_size == 11 and st.st_nlink == 1
    fd = os.open(p, os.O_RDWR)
    try:
        assert os.pwrite(fd, b"WORLD", 6) == 5
        assert os.pread(fd, 100, 0) == b"hello WORLD"
        assert os.pread(fd, 100, 11) == b""
        assert os.pread(fd, 3, 2) == b"llo"
        assert os.pwrite(fd, b"!", 20) == 1                  # past EOF: a gap of zeros
        assert os.pread(fd, 100, 0) == b"hello WORLD" + bytes(9) + b"!"
    finally:
        os.close(fd)
    with open(p, "ab") as f:
        f.write(b"tail")
    assert p.read_bytes().endswith(b"!tail")
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert p.stat().st_size == 0


def test_o_excl_and_modes(d):
    p = d / "x"
    fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
    os.close(fd)
    assert stat.S_IMODE(p.stat().st_mode) == 0o640 & ~current_umask()
    with pytest.raises(FileExistsError):
        os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with pytest.raises(IsADirectoryError):
        open(d, "wb")


def current_umask():
    old = os.umask(0)
    os.umask(old)
    return old


def test_big_file_random(d):
    """20 MiB of random data in writes of odd sizes, read back whole and in pieces."""
    data = os.urandom(20 << 20)
    p = d / "big"
    with open(p, "wb") as f:
        pos, step = 0, 1
        while pos < len(data):
            n = min(len(data) - pos, 4096 * step + 17 * step)
            f.write(data[pos:pos + n])
            pos, step = pos + n, step % 97 + 13
    assert p.stat().st_size == len(data)
    assert hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(data).digest()
    fd = os.open(p, os.O_RDONLY)
    try:
        for off in (0, 4095, 4096, 1 << 20, (20 << 20) - 5, 12345678):
            assert os.pread(fd, 70000, off) == data[off:off + 70000]
    finally:
        os.close(fd)


def test_overwrite_in_place(d):
    p = d / "f"
    base = os.urandom(1 << 20)
    p.write_bytes(base)
    fd = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd, b"X" * 10000, 5000)
        os.pwrite(fd, b"Y", (1 << 20) - 1)
    finally:
        os.close(fd)
    want = bytearray(base)
    want[5000:15000] = b"X" * 10000
    want[-1:] = b"Y"
    assert p.read_bytes() == want


def test_small_file_grows_past_inline(d):
    p = d / "f"
    p.write_bytes(b"a" * 1000)
    with open(p, "ab") as f:
        f.write(b"b" * 5000)
    assert p.read_bytes() == b"a" * 1000 + b"b" * 5000
    os.truncate(p, 10)
    assert p.read_bytes() == b"a" * 10


def test_sparse_file(d):
    p = d / "sparse"
    with open(p, "wb") as f:
        f.seek(10 << 20)
        f.write(b"end")
        f.seek(4096 * 3 + 100)
        f.write(b"mid")
    data = p.read_bytes()
    assert len(data) == (10 << 20) + 3
    assert data[4096 * 3 + 100:4096 * 3 + 103] == b"mid"
    assert data.count(0) == len(data) - 6
    os.truncate(p, 20 << 20)                       # a hole at the end
    assert p.stat().st_size == 20 << 20
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.pread(fd, 8192, 15 << 20) == bytes(8192)
    finally:
        os.close(fd)


def test_truncate(d):
    p = d / "t"
    data = os.urandom(3 * 4096 + 500)
    p.write_bytes(data)
    os.truncate(p, 5000)
    assert p.read_bytes() == data[:5000]
    os.truncate(p, 9000)                            # extends with zeros, not the old bytes
    assert p.read_bytes() == data[:5000] + bytes(4000)
    with open(p, "r+b") as f:
        f.truncate(0)
    assert p.stat().st_size == 0 and p.read_bytes() == b""
    with pytest.raises(IsADirectoryError):
        os.truncate(d, 0)


def test_unlinked_open_file_lives_on(d):
    p = d / "u"
    p.write_bytes(b"still here")
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert not p.exists()
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 100, 0) == b"still here"
        os.pwrite(fd, b"!", 10)
        assert os.pread(fd, 100, 0) == b"still here!"
        assert os.fstat(fd).st_size == 11
    finally:
        os.close(fd)
    assert os.listdir(d) == []


def test_removed_directory_still_open(d):
    """A directory removed while open (a working directory, say) lives on, empty, nlink 0."""
    (d / "gone").mkdir()
    fd = os.open(d / "gone", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rmdir(d / "gone")
        assert os.listdir(fd) == []
        assert os.fstat(fd).st_nlink == 0
        with pytest.raises(FileNotFoundError):
            os.open("new", os.O_CREAT | os.O_WRONLY, dir_fd=fd)
    finally:
        os.close(fd)
    assert os.listdir(d) == []


def test_mmap(d):
    p = d / "m"
    p.write_bytes(bytes(3 * 4096))
    with open(p, "r+b") as f:
        with mmap.mmap(f.fileno(), 0) as m:
            m[4096:4101] = b"mmap!"
            m.flush()
    assert p.read_bytes()[4096:4101] == b"mmap!"


def _write_synced(path, body):
    """Write, fsync the file and its directory; the seconds the syncs took."""
    with open(path, "wb") as f:
        f.write(body)
        f.flush()
        t0 = time.monotonic()
        os.fsync(f.fileno())
        os.fdatasync(f.fileno())
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.monotonic() - t0


def _after_kill(image, mnt, path):
    """kill -9 the daemon (no umount commit), remount: the file's content, or None."""
    mnt.kill()
    with Mount(image, mnt.path) as again:
        p = again.path / path.relative_to(mnt.path)
        return p.read_bytes() if p.exists() else None


def test_fsync_and_flush(d):
    """fsync and fdatasync of a file and fsync of a directory succeed, and the data reads back."""
    assert _write_synced(d / "s", b"x" * 5000) < 5
    assert (d / "s").read_bytes() == b"x" * 5000


def test_fsync_honor_is_durable(tmp_path):
    """fsync=honor: once fsync returned the data is on the device, even if the daemon dies
    before any periodic commit or umount (commit=3600)."""
    image = mkfs(tmp_path / "fs.img")
    with Mount(image, tmp_path / "m", "fsync=honor", "commit=3600") as m:   # exit: nothing left to stop
        _write_synced(m / "f", b"durable" * 1000)
        assert _after_kill(image, m, m / "f") == b"durable" * 1000


def test_fsync_ignore_waits_for_the_commit(tmp_path):
    """fsync=ignore (default): fsync returns at once without a commit, so a daemon killed
    before the next commit loses the write; the periodic commit (commit=1) stores it."""
    image = mkfs(tmp_path / "fs.img")
    with Mount(image, tmp_path / "m", "commit=3600") as m:
        assert _write_synced(m / "f", b"lost" * 1000) < 0.5
        assert _after_kill(image, m, m / "f") is None
    with Mount(image, tmp_path / "m", "commit=1") as m:
        _write_synced(m / "g", b"kept" * 1000)
        time.sleep(3)                   # the next periodic commit has run
        assert _after_kill(image, m, m / "g") == b"kept" * 1000


# ---- directories -----------------------------------------------------------------------------
def test_mkdir_rmdir(d):
    (d / "a").mkdir()
    assert d.stat().st_nlink == 3
    (d / "a" / "b").mkdir()
    assert (d / "a").stat().st_nlink == 3
    with pytest.raises(FileExistsError):
        (d / "a").mkdir()
    with pytest.raises(OSError) as e:
        os.rmdir(d / "a")
    assert err(e) == errno.ENOTEMPTY
    (d / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        os.rmdir(d / "f")
    with pytest.raises(NotADirectoryError):
        os.mkdir(d / "f" / "sub")
    with pytest.raises(IsADirectoryError):
        os.unlink(d / "a")
    with pytest.raises(FileNotFoundError):
        os.rmdir(d / "missing")
    with pytest.raises(OSError) as e:
        os.rmdir(os.path.join(d, "a", "."))     # (pathlib would drop the ".")
    assert err(e) == errno.EINVAL
    os.rmdir(d / "a" / "b")
    os.rmdir(d / "a")
    assert d.stat().st_nlink == 2
    assert sorted(os.listdir(d)) == ["f"]


def test_readdir_many(d):
    names = {f"file-{i:05d}-{'x' * (i % 50)}" for i in range(3000)}
    for n in names:
        (d / n).write_bytes(n.encode())
    (d / "sub").mkdir()
    names.add("sub")
    assert set(os.listdir(d)) == names
    with os.scandir(d) as it:
        for e in it:
            assert e.is_dir() == (e.name == "sub")
            assert e.inode() == os.lstat(e.path).st_ino
    out = subprocess.run(["ls", "-a", str(d)], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == [".", ".."] and len(out) == len(names) + 2


def test_readdir_while_deleting(d):
    """Entries removed during a listing must not make others skipped or repeated."""
    names = [f"n{i}" for i in range(2000)]
    for n in names:
        (d / n).touch()
    seen = []
    fd = os.open(d, os.O_RDONLY)
    try:
        with os.scandir(fd) as it:
            for i, e in enumerate(it):
                seen.append(e.name)
                if i == 100:
                    for n in names[::2]:
                        if n not in seen:
                            os.unlink(d / n)
    finally:
        os.close(fd)
    assert len(seen) == len(set(seen))
    assert set(names[1::2]) <= set(seen)


def test_dotdot(d):
    (d / "a" / "b").mkdir(parents=True)
    assert os.stat(d / "a" / "b" / "..").st_ino == os.stat(d / "a").st_ino
    assert os.stat(d / "a" / "b" / ".." / "..").st_ino == os.stat(d).st_ino


def test_setgid_directory(d):
    g = d / "g"
    g.mkdir()
    os.chown(g, 0, 1234)
    os.chmod(g, 0o2775)
    (g / "f").touch()
    (g / "sub").mkdir()
    assert (g / "f").stat().st_gid == 1234
    assert (g / "sub").stat().st_gid == 1234
    assert (g / "sub").stat().st_mode & stat.S_ISGID


# ---- names ------------------------------------------------------------------------------------
def test_name_too_long(d):
    ok, long = "n" * 255, "n" * 256
    (d / ok).write_bytes(b"")
    (d / "f").write_bytes(b"")
    for call in (lambda: (d / long).write_bytes(b""),
                 lambda: os.mkdir(d / long),
                 lambda: os.stat(d / long),
                 lambda: os.symlink("x", d / long),
                 lambda: os.link(d / "f", d / long),
                 lambda: os.rename(d / "f", d / long),
                 lambda: os.mknod(d / long, stat.S_IFIFO | 0o600)):
        with pytest.raises(OSError) as e:
            call()
        assert err(e) == errno.ENAMETOOLONG
    assert sorted(os.listdir(d)) == sorted(["f", ok])


def test_names_are_bytes(d):
    names = [b"\xff\xfe-not-utf8", "caf\u00e9".encode(), b"sp ace", b"tab\t", b"new\nline", b"-" * 255]
    for n in names:
        with open(os.path.join(os.fsencode(d), n), "wb") as f:
            f.write(n)
    assert sorted(os.listdir(os.fsencode(d))) == sorted(names)
    for n in names:
        with open(os.path.join(os.fsencode(d), n), "rb") as f:
            assert f.read() == n


def test_enoent(d):
    with pytest.raises(FileNotFoundError):
        open(d / "missing", "rb")
    with pytest.raises(FileNotFoundError):
        os.stat(d / "missing" / "x")
    with pytest.raises(FileNotFoundError):
        os.unlink(d / "missing")
    with pytest.raises(FileNotFoundError):
        os.rename(d / "missing", d / "y")
    with pytest.raises(FileNotFoundError):
        os.readlink(d / "missing")
    (d / "f").touch()
    with pytest.raises(NotADirectoryError):
        os.stat(d / "f" / "x")


# ---- rename -----------------------------------------------------------------------------------
def test_rename(d):
    (d / "a").write_bytes(b"A")
    (d / "b").write_bytes(b"B")
    ino_a = (d / "a").stat().st_ino
    os.rename(d / "a", d / "b")                    # replaces b
    assert not (d / "a").exists()
    assert (d / "b").read_bytes() == b"A" and (d / "b").stat().st_ino == ino_a
    (d / "dir1").mkdir()
    (d / "dir2").mkdir()
    (d / "full").mkdir()
    (d / "full" / "x").touch()
    with pytest.raises(IsADirectoryError):
        os.rename(d / "b", d / "dir1")
    with pytest.raises(NotADirectoryError):
        os.rename(d / "dir1", d / "b")
    with pytest.raises(OSError) as e:
        os.rename(d / "dir1", d / "full")
    assert err(e) in (errno.ENOTEMPTY, errno.EEXIST)
    with pytest.raises(OSError) as e:
        os.rename(d / "dir1", d / "dir1" / "inside")
    assert err(e) == errno.EINVAL
    os.rename(d / "dir1", d / "dir2")                # onto an empty directory
    assert not (d / "dir1").exists() and (d / "dir2").is_dir()
    nlink = d.stat().st_nlink
    os.rename(d / "dir2", d / "full" / "moved")      # across directories: .. and nlinks follow
    assert d.stat().st_nlink == nlink - 1
    assert (d / "full").stat().st_nlink == 3
    assert os.stat(d / "full" / "moved" / "..").st_ino == (d / "full").stat().st_ino
    os.rename(d / "b", d / "b")                      # onto itself: nothing happens
    assert (d / "b").read_bytes() == b"A"


def test_rename_hardlink_onto_itself(d):
    (d / "a").write_bytes(b"x")
    os.link(d / "a", d / "b")
    os.rename(d / "a", d / "b")                      # POSIX: both names stay
    assert (d / "a").exists() and (d / "b").stat().st_nlink == 2


def test_renameat2(d):
    (d / "a").write_bytes(b"A")
    (d / "b").write_bytes(b"B")
    (d / "dir").mkdir()
    (d / "dir" / "inner").write_bytes(b"I")
    with pytest.raises(FileExistsError):
        renameat2(d / "a", d / "b", RENAME_NOREPLACE)
    renameat2(d / "a", d / "c", RENAME_NOREPLACE)
    assert (d / "c").read_bytes() == b"A" and not (d / "a").exists()
    renameat2(d / "c", d / "b", RENAME_EXCHANGE)
    assert (d / "c").read_bytes() == b"B" and (d / "b").read_bytes() == b"A"
    renameat2(d / "b", d / "dir", RENAME_EXCHANGE)   # a file and a directory swap
    assert (d / "b" / "inner").read_bytes() == b"I" and (d / "dir").read_bytes() == b"A"
    with pytest.raises(FileNotFoundError):
        renameat2(d / "c", d / "missing", RENAME_EXCHANGE)
    with pytest.raises(OSError) as e:
        renameat2(d / "c", d / "b", RENAME_EXCHANGE | RENAME_NOREPLACE)
    assert err(e) == errno.EINVAL


def test_renameat2_exchange_directories_across(d):
    (d / "p" / "x").mkdir(parents=True)
    (d / "q" / "y" / "z").mkdir(parents=True)
    renameat2(d / "p" / "x", d / "q" / "y", RENAME_EXCHANGE)
    assert (d / "p" / "x" / "z").is_dir() and not (d / "q" / "y" / "z").exists()
    assert os.stat(d / "p" / "x" / "..").st_ino == (d / "p").stat().st_ino
    assert os.stat(d / "q" / "y" / "..").st_ino == (d / "q").stat().st_ino


# ---- links -------------------------------------------------------------------------------------
def test_hardlinks(d):
    a = d / "a"
    a.write_bytes(b"shared")
    (d / "sub").mkdir()
    os.link(a, d / "sub" / "b")
    os.link(a, d / "c")
    st = a.stat()
    assert st.st_nlink == 3
    assert (d / "sub" / "b").stat().st_ino == st.st_ino == (d / "c").stat().st_ino
    with open(d / "c", "ab") as f:
        f.write(b"!")
    assert (d / "sub" / "b").read_bytes() == b"shared!"
    os.unlink(a)
    assert (d / "c").stat().st_nlink == 2
    with pytest.raises(FileExistsError):
        os.link(d / "c", d / "sub" / "b")
    with pytest.raises(PermissionError):
        os.link(d / "sub", d / "sublink")
    with pytest.raises(FileNotFoundError):
        os.link(d / "missing", d / "x")


def test_symlinks(d):
    (d / "target").write_bytes(b"T")
    os.symlink("target", d / "l")
    os.symlink("nowhere/at/all", d / "dangling")
    long_target = "x/" * 2000
    os.symlink(long_target, d / "long")
    assert os.readlink(d / "l") == "target"
    assert os.readlink(d / "long") == long_target
    assert (d / "l").read_bytes() == b"T"
    st = os.lstat(d / "l")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("target")
    assert not (d / "dangling").exists() and os.path.lexists(d / "dangling")
    with pytest.raises(FileExistsError):
        os.symlink("y", d / "l")
    with pytest.raises(OSError) as e:
        os.readlink(d / "target")
    assert err(e) == errno.EINVAL
    with pytest.raises(OSError) as e:
        os.symlink("y" * 5000, d / "toolong")
    assert err(e) == errno.ENAMETOOLONG


# ---- special files ------------------------------------------------------------------------------
def test_fifo(d):
    os.mkfifo(d / "fifo", 0o600)
    assert stat.S_ISFIFO(os.stat(d / "fifo").st_mode)
    got = []
    t = threading.Thread(target=lambda: got.append(open(d / "fifo", "rb").read()))
    t.start()
    with open(d / "fifo", "wb") as f:
        f.write(b"through the pipe")
    t.join(10)
    assert got == [b"through the pipe"]


def test_device_nodes(d):
    os.mknod(d / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(d / "whiteout", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.mknod(d / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 200))
    st = os.stat(d / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    with pytest.raises(PermissionError):            # inert: root mounts are nodev by default
        open(d / "null", "wb")
    wo = os.lstat(d / "whiteout")                  # 0:0 is an ordinary node, not a whiteout
    assert stat.S_ISCHR(wo.st_mode) and wo.st_rdev == 0
    assert "whiteout" in os.listdir(d)
    assert os.stat(d / "blk").st_rdev == os.makedev(7, 200)
    os.mknod(d / "plain", 0o644)                     # no type: a regular file
    assert stat.S_ISREG(os.stat(d / "plain").st_mode)
    with pytest.raises(FileExistsError):
        os.mknod(d / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))


def test_unix_socket(d):
    import socket
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(d / "sock"))
        assert stat.S_ISSOCK(os.stat(d / "sock").st_mode)
    finally:
        s.close()


# ---- attributes ------------------------------------------------------------------------------------
def test_chmod_chown(d):
    p = d / "f"
    p.write_bytes(b"x")
    ctime = p.stat().st_ctime_ns
    os.chmod(p, 0o4751)
    st = p.stat()
    assert stat.S_IMODE(st.st_mode) == 0o4751 and stat.S_ISREG(st.st_mode)
    assert st.st_ctime_ns >= ctime
    os.chown(p, 1000, 2000)
    st = p.stat()
    assert (st.st_uid, st.st_gid) == (1000, 2000)
    os.chown(p, -1, 3000)
    assert (p.stat().st_uid, p.stat().st_gid) == (1000, 3000)
    os.lchown(d, 5, 6)
    assert (d.stat().st_uid, d.stat().st_gid) == (5, 6)
    os.symlink("f", d / "l")
    os.lchown(d / "l", 7, 8)
    assert os.lstat(d / "l").st_uid == 7 and p.stat().st_uid == 1000


def test_utimes(d):
    p = d / "f"
    p.write_bytes(b"x")
    os.utime(p, ns=(1_000_000_123, 2_000_000_456))
    st = p.stat()
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    before = st.st_ctime_ns
    utimensat(p, (0, UTIME_OMIT), (0, UTIME_NOW))    # mtime now, atime untouched
    st = p.stat()
    assert st.st_atime_ns == 1_000_000_123
    assert st.st_mtime_ns > 2_000_000_456 and st.st_ctime_ns >= before
    utimensat(p, (0, UTIME_NOW), (0, UTIME_OMIT))
    assert p.stat().st_atime_ns > 1_000_000_123
    os.symlink("f", d / "l")
    utimensat(d / "l", (5, 0), (6, 0), follow=False)
    assert os.lstat(d / "l").st_mtime_ns == 6_000_000_000


def test_write_updates_times(d):
    p = d / "f"
    p.write_bytes(b"x")
    os.utime(p, ns=(1, 1))
    with open(p, "ab") as f:
        f.write(b"y")
    assert p.stat().st_mtime_ns > 1
    dir_mtime = d.stat().st_mtime_ns
    os.utime(d, ns=(1, 1))
    (d / "new").touch()
    assert d.stat().st_mtime_ns > 1 and dir_mtime > 1


def test_permissions_other_users(d):
    """allow_other + default_permissions: the kernel checks modes for other uids."""
    (d / "open").write_bytes(b"public")
    os.chmod(d / "open", 0o644)
    (d / "closed").write_bytes(b"secret")
    os.chmod(d / "closed", 0o600)
    os.chmod(d, 0o755)
    r = as_user(1000, 1000, f"print(open({str(d / 'open')!r}).read())")
    assert r.returncode == 0 and r.stdout.strip() == "public", r
    r = as_user(1000, 1000, f"open({str(d / 'closed')!r}).read()")
    assert r.returncode != 0 and "PermissionError" in r.stderr
    r = as_user(1000, 1000, f"open({str(d / 'new')!r}, 'w')")
    assert r.returncode != 0 and "PermissionError" in r.stderr
    assert os.access(d / "closed", os.R_OK | os.W_OK)


def test_write_by_other_user_drops_setuid(d):
    p = d / "suid"
    p.write_bytes(b"#!/bin/sh\n")
    os.chown(p, 1000, 1000)
    os.chmod(p, 0o4777)
    r = as_user(1000, 1000, f"f = open({str(p)!r}, 'ab'); f.write(b'x'); f.close()")
    assert r.returncode == 0, r
    assert not p.stat().st_mode & stat.S_ISUID


# ---- xattrs -------------------------------------------------------------------------------------------
def test_xattrs(d):
    p = d / "f"
    p.write_bytes(b"x")
    os.setxattr(p, "user.one", b"1")
    os.setxattr(p, "user.big", b"v" * 1900)
    with pytest.raises(OSError) as e:             # one item holds key and value, like ext4's block
        os.setxattr(p, "user.huge", b"v" * 4000)
    assert err(e) == errno.ENOSPC
    os.setxattr(p, "trusted.t", b"")
    assert os.getxattr(p, "user.one") == b"1"
    assert os.getxattr(p, "user.big") == b"v" * 1900
    assert os.getxattr(p, "trusted.t") == b""
    assert sorted(os.listxattr(p)) == ["trusted.t", "user.big", "user.one"]
    with pytest.raises(FileExistsError):
        os.setxattr(p, "user.one", b"2", os.XATTR_CREATE)
    with pytest.raises(OSError) as e:
        os.setxattr(p, "user.none", b"2", os.XATTR_REPLACE)
    assert err(e) == errno.ENODATA
    os.setxattr(p, "user.one", b"22", os.XATTR_REPLACE)
    assert os.getxattr(p, "user.one") == b"22"
    os.removexattr(p, "user.one")
    with pytest.raises(OSError) as e:
        os.getxattr(p, "user.one")
    assert err(e) == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.removexattr(p, "user.one")
    assert err(e) == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.setxattr(p, "bogus.name", b"x")
    assert err(e) in (errno.EOPNOTSUPP, errno.ENOTSUP)
    os.setxattr(d, "user.on_dir", b"d")
    assert os.getxattr(d, "user.on_dir") == b"d"
    os.symlink("f", d / "l")
    os.setxattr(d / "l", "trusted.on_link", b"l", follow_symlinks=False)
    assert os.listxattr(d / "l", follow_symlinks=False) == ["trusted.on_link"]
    assert "trusted.on_link" not in os.listxattr(p)


def test_security_capability(d):
    """File capabilities are an xattr; a write removes them (the kernel asks us to)."""
    p = d / "ping"
    p.write_bytes(b"\x7fELF")
    cap = bytes.fromhex("0000000200200000000000000000000000000000")   # v2, cap_net_raw
    os.setxattr(p, "security.capability", cap)
    assert os.getxattr(p, "security.capability") == cap
    assert "security.capability" in os.listxattr(p)
    with open(p, "ab") as f:
        f.write(b"more")
    assert "security.capability" not in os.listxattr(p)


def test_commit_xattr_is_hidden(mnt, d):
    assert "trusted.ctrfs.commit" not in os.listxattr(mnt.path)
    with pytest.raises(OSError) as e:
        os.getxattr(mnt.path, "trusted.ctrfs.commit")
    assert err(e) == errno.ENODATA


# ---- file system -------------------------------------------------------------------------------------
def test_statfs(mnt, d):
    st = os.statvfs(mnt.path)
    assert st.f_bsize == 4096 and st.f_namemax == 255
    assert 0 < st.f_bfree <= st.f_blocks
    (d / "f").write_bytes(b"x")
    assert os.statvfs(d / "f").f_blocks == st.f_blocks
