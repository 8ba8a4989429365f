"""Which device a path names, and the lock that keeps one writer per device.

One device has many names: the image file, a symlink to it, a bind mount of it, a loop
device backed by it.  flock on the opened path meets only other opens of the same inode,
and a loop device's inode is not its backing file's.  So the lock is keyed by identity:
  regular file          (st_dev, st_ino) of the file (symlinks and bind mounts reach it)
  loop block device     the identity of what backs it (LOOP_GET_STATUS64)
  other block device    its device number st_rdev
and it is an flock on LOCK_DIR/<identity>.lock: exclusive for read-write opens, shared
for read-only ones, never waited for.  flock belongs to the open file description, so it
survives mount.ctrfs's fork into the daemon and ends when the last descriptor closes,
even on kill -9.  Lock files are never removed: unlinking one that another process is
just opening would give two lock inodes for one device; /run is emptied at boot.
"""
import errno
import fcntl
import os
import stat
import struct

LOCK_DIR = "/run/ctrfs/locks"
LOOP_MAJOR = 7
LOOP_GET_STATUS64 = 0x4C05
MAX_LOOP_DEPTH = 8                     # loops over loops, followed this far
# struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit, 4 x u32,
# file name, crypt name, key, lo_init[2]
_LOOP_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")


def _devno(dev):
    return f"{os.major(dev)}:{os.minor(dev)}"


def identity(fd, depth=0):
    """The name of the device open on fd, the same whichever path opened it."""
    st = os.fstat(fd)
    if not stat.S_ISBLK(st.st_mode):
        return f"file-{_devno(st.st_dev)}-{st.st_ino}"
    backing = loop_backing(fd, st.st_rdev) if depth < MAX_LOOP_DEPTH else None
    if backing is None:
        return f"blk-{_devno(st.st_rdev)}"
    dev, ino, rdev = backing
    if not rdev:
        return f"file-{_devno(dev)}-{ino}"
    node = device_node(rdev)           # a loop over a block device (another loop, even)
    try:
        inner = os.open(node, os.O_RDONLY | os.O_CLOEXEC) if node else -1
    except OSError:
        inner = -1
    if inner < 0:
        return f"blk-{_devno(rdev)}"
    try:
        return identity(inner, depth + 1)
    finally:
        os.close(inner)


def device_node(rdev):
    """/dev/NAME of a block device number (sysfs's uevent names it), or None."""
    try:
        with open(f"/sys/dev/block/{_devno(rdev)}/uevent") as f:
            name = next(line[8:].strip() for line in f if line.startswith("DEVNAME="))
        node = f"/dev/{name}"
        return node if os.stat(node).st_rdev == rdev else None
    except (OSError, StopIteration):
        return None


def loop_backing(fd, rdev):
    """(st_dev, st_ino, st_rdev) of a loop device's backing file, or None when the device
    is no loop device or has nothing attached."""
    if os.major(rdev) != LOOP_MAJOR and not os.path.isdir(f"/sys/dev/block/{_devno(rdev)}/loop"):
        return None
    try:
        buf = fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))
    except OSError:                    # ENXIO: no file attached
        return None
    return _LOOP_INFO64.unpack(buf)[:3]


def lock(fd, *, exclusive):
    """flock the identity lock of the device open on fd; returns the lock's descriptor
    (close it to release), or None where the lock directory cannot be made (an
    unprivileged user: the per-path flock is all there is then).  BlockingIOError when
    another process holds it in a conflicting mode."""
    path = os.path.join(LOCK_DIR, identity(fd) + ".lock")
    lock_fd = _open_lock_file(path)
    if lock_fd is None:
        return None
    try:
        fcntl.flock(lock_fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BaseException:
        os.close(lock_fd)
        raise
    return lock_fd


def _open_lock_file(path):
    # Read-only is enough for flock, and lets users flock lock files root created.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(path, flags)
    except FileNotFoundError:
        pass
    try:
        os.makedirs(LOCK_DIR, mode=0o755, exist_ok=True)
        return os.open(path, flags | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None
        raise
