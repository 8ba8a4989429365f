"""Copy a directory tree (a rootfs) into an FS tree: files, dirs, symlinks, hardlinks,
device nodes, FIFOs, sockets, modes, owners, nanosecond times and xattrs."""
import os
import stat

from . import acl
from .errors import FsError, UsageError
from .format import constants as C

READ_CHUNK = 1 << 20


def import_directory(fs, src, dst_ino=C.ROOT_INO):
    """Copy the contents of directory src into directory dst_ino of FileSystem fs.
    Returns (files, bytes).  Does not follow symlinks; stays on src's file system."""
    try:
        top = os.lstat(src)
    except OSError as exc:
        raise UsageError(f"{src}: {exc.strerror}") from None
    if not stat.S_ISDIR(top.st_mode):
        raise UsageError(f"{src}: not a directory")
    seen = {}                      # (st_dev, st_ino) -> ctrfs ino, for hardlinks
    counts = [0, 0]
    _copy_dir(fs, src, dst_ino, top.st_dev, seen, counts)
    _copy_meta(fs, dst_ino, src, top)
    return tuple(counts)


def _copy_dir(fs, path, ino, dev, seen, counts):
    with os.scandir(path) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        name = os.fsencode(entry.name)
        st = entry.stat(follow_symlinks=False)
        if st.st_dev != dev:
            continue
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) in seen:
            fs.link(seen[(st.st_dev, st.st_ino)], ino, name)
            continue
        child = _make(fs, ino, name, entry.path, st, counts)
        if stat.S_ISDIR(st.st_mode):
            _copy_dir(fs, entry.path, child, dev, seen, counts)
        elif st.st_nlink > 1:
            seen[(st.st_dev, st.st_ino)] = child
        _copy_meta(fs, child, entry.path, st)


def _make(fs, parent, name, path, st, counts):
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return fs.mkdir(parent, name, stat.S_IMODE(mode), st.st_uid, st.st_gid).ino
    if stat.S_ISLNK(mode):
        return fs.symlink(parent, name, os.fsencode(os.readlink(path)), st.st_uid, st.st_gid).ino
    rdev = st.st_rdev if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 0
    ino = fs.mknod(parent, name, mode, st.st_uid, st.st_gid, rdev).ino
    if stat.S_ISREG(mode):
        counts[0] += 1
        with open(path, "rb") as f:
            offset = 0
            while chunk := f.read(READ_CHUNK):
                fs.write(ino, offset, chunk)
                offset += len(chunk)
        counts[1] += offset
    return ino


def _copy_meta(fs, ino, path, st):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        names = []
    for xname in names:
        try:
            fs.setxattr(ino, os.fsencode(xname), os.getxattr(path, xname, follow_symlinks=False))
        except (OSError, FsError):
            pass   # an attribute ctrfs cannot hold (namespace or size): the copy goes on
    for xname in set(fs.listxattr(ino)) & set(acl.NAMES) - {os.fsencode(n) for n in names}:
        fs.removexattr(ino, xname)    # inherited from a default ACL here, not in the source
    fs.setattr(ino, mode=None if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode),
               atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns)
