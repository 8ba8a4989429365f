"""Bind mounts of views: mount(2) with MS_BIND, the per-mount flags, the mount table as
the daemon sees it, and the utab line that makes umount(8) run umount.fuse.ctrfs."""
import ctypes
import os


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_SYNCHRONOUS, MS_REMOUNT, MS_DIRSYNC, MS_NOATIME = 16, 32, 128, 1024
MS_BIND = 4096
MNT_DETACH = 2
FLAG_OPTIONS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                "sync": MS_SYNCHRONOUS, "dirsync": MS_DIRSYNC, "noatime": MS_NOATIME}


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    return libc


def mount_flags(options):
    """MS_* flags of a bind from the FUSE option set mount.ctrfs computed."""
    flags = 0
    for opt in options:
        flags |= FLAG_OPTIONS.get(opt, 0)
    return flags


def bind(source, target, flags):
    """Bind source onto target, then set the per-mount flags (a bind copies the source
    mount's; only a remount changes them).  Raises OSError."""
    libc = _libc()
    if libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot bind {source} on {target}: {os.strerror(err)}")
    if libc.mount(None, os.fsencode(target), None, MS_REMOUNT | MS_BIND | flags, None) != 0:
        err = ctypes.get_errno()
        detach(target)
        raise OSError(err, f"cannot set the flags of {target}: {os.strerror(err)}")


def detach(target):
    """Lazy unmount; False when nothing was mounted there (or it failed)."""
    return _libc().umount2(os.fsencode(target), MNT_DETACH) == 0


def session_mounts(devno):
    """{root inside the session: set of mount points} of the mounts of session devno
    ("MAJOR:MINOR") in this mount namespace."""
    from ..unmount import unescape

    out = {}
    with open("/proc/self/mountinfo") as f:
        table = f.read()
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[2] == devno:
            out.setdefault(unescape(fields[3]), set()).add(unescape(fields[4]))
    return out


def add_utab(source, target, slot):
    """The utab line of a view's bind: its root in the session is /SLOT (libmount matches
    utab lines to mountinfo by target and root)."""
    from .. import utab

    utab.add(os.path.abspath(source), target, root=f"/{slot}")
