"""Write a tree into a host directory without ever leaving it: every name is created
relative to an open directory fd (openat style), with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW, and
only directories this writer made itself are descended into, so a symlink of the image
(`etc -> /`) is written as a symlink and never followed."""
import errno
import os
import stat

from ..errors import CorruptError
from ..treediff import ENTRY, LINK
from .export import READ_CHUNK

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _check_name(name):
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise CorruptError(f"FS tree: bad file name {name!r}")


def write_tree(fs, changes, root_fd):
    """Create the ENTRY/LINK changes of a whole tree (ctrfs.treediff against nothing,
    sorted: a directory before its content) below the directory open as root_fd."""
    stack = [(b"", os.dup(root_fd), None)]          # (path, fd, inode of the new tree)
    try:
        for ch in changes:
            if ch.kind not in (ENTRY, LINK):
                raise CorruptError(f"{ch.kind} in a whole-tree export")
            if not ch.path:
                stack[0] = (b"", stack[0][1], ch.ino)
                continue
            head, _sep, name = ch.path.rpartition(b"/")
            _check_name(name)
            while stack[-1][0] != head:
                if len(stack) == 1:
                    raise CorruptError(f"{ch.path!r} comes before its directory")
                _close_dir(fs, stack.pop())
            fd = stack[-1][1]
            if ch.kind == LINK:
                _link(root_fd, ch.target, fd, name)
                continue
            a = fs.getattr(ch.ino)
            if a.is_dir:
                os.mkdir(name, 0o700, dir_fd=fd)
                stack.append((ch.path, os.open(name, DIR_FLAGS, dir_fd=fd), ch.ino))
            else:
                _make(fs, fd, name, ch.ino, a)
        while len(stack) > 1:
            _close_dir(fs, stack.pop())
        _close_dir(fs, stack.pop())
    finally:
        for _p, fd, _i in stack:
            os.close(fd)


def _close_dir(fs, entry):
    """A directory's own attributes come last: its content changed its mtime, and a mode
    without w would have kept the content out."""
    _path, fd, ino = entry
    try:
        if ino is not None:
            a = fs.getattr(ino)
            _chown(fd, a)
            os.chmod(fd, stat.S_IMODE(a.mode))
            _xattrs(fs, ino, fd, None)
            os.utime(fd, ns=(a.atime_ns, a.mtime_ns))
    finally:
        os.close(fd)


def _chown(fd, a, name=None):
    try:
        if name is None:
            os.chown(fd, a.uid, a.gid)
        else:
            os.chown(name, a.uid, a.gid, dir_fd=fd, follow_symlinks=False)
    except PermissionError:
        if os.geteuid() == 0:
            raise                      # not root: files stay the exporter's


def _xattrs(fs, ino, fd, name):
    """fd of the object itself (name None), or of its directory for a symlink or device
    (set through /proc/self/fd/N/NAME: the dir fd pins the directory, the last name is
    not followed)."""
    target = fd if name is None else f"/proc/self/fd/{fd}/{os.fsdecode(name)}"
    for n in sorted(bytes(n) for n in fs.listxattr(ino)):
        try:
            if name is None:
                os.setxattr(target, n, fs.getxattr(ino, n))
            else:
                os.setxattr(target, n, fs.getxattr(ino, n), follow_symlinks=False)
        except OSError as exc:
            # not root: trusted.* and security.* stay behind; Linux keeps user.* off symlinks
            if os.geteuid() == 0 and not (exc.errno == errno.EPERM and n.startswith(b"user.")):
                raise


def _make(fs, dfd, name, ino, a):
    fmt = stat.S_IFMT(a.mode)
    if fmt == stat.S_IFREG:
        fd = os.open(name, FILE_FLAGS, 0o600, dir_fd=dfd)
        try:
            for off in range(0, a.size, READ_CHUNK):
                chunk = fs.read(ino, off, min(READ_CHUNK, a.size - off))
                if chunk.count(0) == len(chunk):
                    continue           # a hole stays a hole
                os.pwrite(fd, chunk, off)
            os.ftruncate(fd, a.size)
            _chown(fd, a)
            os.chmod(fd, stat.S_IMODE(a.mode))    # after chown, which drops set-id bits
            _xattrs(fs, ino, fd, None)            # after chown, which drops security.capability
            os.utime(fd, ns=(a.atime_ns, a.mtime_ns))
        finally:
            os.close(fd)
        return
    if fmt == stat.S_IFLNK:
        os.symlink(fs.readlink(ino), name, dir_fd=dfd)
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
        os.mknod(name, fmt | 0o600, a.rdev, dir_fd=dfd)
    else:
        return                         # a socket: nothing to create
    _chown(dfd, a, name)
    if fmt != stat.S_IFLNK:
        # just made by mknod in a directory only this writer fills: not a symlink
        os.chmod(name, stat.S_IMODE(a.mode), dir_fd=dfd)
    _xattrs(fs, ino, dfd, name)
    os.utime(name, ns=(a.atime_ns, a.mtime_ns), dir_fd=dfd, follow_symlinks=False)


def _link(root_fd, target, dfd, name):
    """A hardlink to `target` (written earlier), its directory reached fd by fd."""
    head, _sep, base = target.rpartition(b"/")
    fds = []
    try:
        cur = root_fd
        for part in head.split(b"/") if head else ():
            _check_name(part)
            cur = os.open(part, DIR_FLAGS, dir_fd=cur)
            fds.append(cur)
        os.link(base, name, src_dir_fd=cur, dst_dir_fd=dfd, follow_symlinks=False)
    finally:
        for fd in fds:
            os.close(fd)


def export_dir(engine, name, root):
    """The whole tree of snapshot `name` into the empty directory `root`."""
    from ..filesystem import FileSystem
    from ..treediff import tree_changes

    fs = FileSystem(engine, name, writable=False)
    changes = tree_changes(engine, None, name)
    fd = os.open(root, DIR_FLAGS)
    try:
        write_tree(fs, changes, fd)
    finally:
        os.close(fd)
    return len(changes)

