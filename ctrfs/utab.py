"""The mount's line in libmount's utab (/run/mount/utab), through libmount itself.

umount(8) runs /sbin/umount.<type> only when it reads the mount's type from mountinfo; for
an absolute path with no utab line it takes the type from statfs(2), which says just
"fuse", and unmounts by itself.  A utab line with the userspace option
`uhelper=fuse.ctrfs` (udisks uses the same option) makes it run umount.fuse.ctrfs, which
waits for the daemon's last checkpoint.  libmount does the locking and the file format.
"""
import ctypes
import ctypes.util

UHELPER = "uhelper=fuse.ctrfs"


def _libmount():
    lib = ctypes.CDLL(ctypes.util.find_library("mount") or "libmount.so.1", use_errno=True)
    lib.mnt_new_fs.restype = ctypes.c_void_p
    lib.mnt_new_update.restype = ctypes.c_void_p
    for fn in ("mnt_fs_set_source", "mnt_fs_set_target", "mnt_fs_set_fstype", "mnt_fs_set_options"):
        getattr(lib, fn).argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.mnt_fs_set_root.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.mnt_update_set_fs.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_void_p]
    lib.mnt_update_table.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.mnt_free_update.argtypes = [ctypes.c_void_p]
    lib.mnt_unref_fs.argtypes = [ctypes.c_void_p]
    return lib


def _update(target, source=None, root="/"):
    """Add (source given) or remove the utab line of target.  Raises OSError."""
    lib = _libmount()
    upd = lib.mnt_new_update()
    fs = None
    try:
        if source is not None:
            fs = lib.mnt_new_fs()
            lib.mnt_fs_set_source(fs, source.encode())
            lib.mnt_fs_set_target(fs, target.encode())
            lib.mnt_fs_set_root(fs, root.encode())
            lib.mnt_fs_set_fstype(fs, b"fuse.ctrfs")
            lib.mnt_fs_set_options(fs, UHELPER.encode())
            rc = lib.mnt_update_set_fs(upd, 0, None, fs)
        else:
            rc = lib.mnt_update_set_fs(upd, 0, target.encode(), None)
        if rc == 0:
            rc = lib.mnt_update_table(upd, None)
        if rc < 0:
            raise OSError(-rc, f"libmount cannot update utab for {target}")
    finally:
        if fs:
            lib.mnt_unref_fs(fs)
        lib.mnt_free_update(upd)


def add(source, target, root="/"):
    _update(target, source, root)


def remove(target):
    _update(target)
