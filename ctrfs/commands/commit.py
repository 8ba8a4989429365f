"""ctrfs commit MOUNTPOINT|DEVICE NAME[:TAG] [--tree TREE]: a writable tree becomes an
image.  For a mount, the request goes to the mount's daemon as a trusted.* xattr on the
mount root (the daemon owns the device), and the errno it answers becomes the message; for
an unmounted device, the tree (default @default) is committed in process.  Before asking
a mount, syncfs(2) makes the kernel send what its writeback cache still holds (pages of
files still open for writing), so the image has every write made before the command."""
import ctypes
import errno
import os

from .. import catalogue
from ..errors import CtrfsError, DeviceError, UsageError
from ..tool import FUSE_TYPES, mount_type

COMMIT_XATTR = "trusted.ctrfs.commit"


def add_parser(sub):
    s = sub.add_parser("commit", help="turn a writable tree (a mount's, or one of an unmounted "
                       "device) into an image NAME[:TAG]")
    s.add_argument("mountpoint", metavar="MOUNTPOINT|DEVICE")
    s.add_argument("name", metavar="NAME[:TAG]")
    s.add_argument("--tree", metavar="TREE", help="with a DEVICE: the writable tree (default @default)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=run)


def run(args):
    if not os.path.isdir(args.mountpoint) and os.path.exists(args.mountpoint):
        return commit_offline(args)
    if args.tree:
        raise UsageError("--tree goes with a DEVICE; a mount commits the tree it serves")
    return commit_mounted(args)


def commit_offline(args):
    from ..format import constants as C
    from ..tool import open_engine_rw

    args.device = args.mountpoint                 # messages name the device
    engine = open_engine_rw(args.device)
    try:
        tree = catalogue.resolve(engine, args.tree or catalogue.DEFAULT_TREE)
        if engine.snapshot(tree)["kind"] != C.SNAP_WRITABLE:
            raise UsageError(f"{catalogue.shown(tree)} is an image, not a writable tree")
        key = catalogue.new_key(engine, args.name)
        engine.commit(snapshot=(tree, key))
    finally:
        engine.close()
    if not args.quiet:
        print(f"committed {catalogue.shown(key)}")
    return 0


def write_back(mnt):
    """syncfs(2) of the mount: every dirty page reaches the daemon before it commits."""
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise CtrfsError(f"{mnt}: writing back cached file data failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def commit_mounted(args):
    ref = catalogue.parse_reference(os.fsencode(args.name))
    name = ref.key
    mnt = args.mountpoint
    if not os.path.isdir(mnt):
        raise DeviceError(f"{mnt}: no such directory")
    fstype = mount_type(mnt)
    if fstype not in FUSE_TYPES:
        raise CtrfsError(f"{mnt}: not a ctrfs mount" + (f" ({fstype})" if fstype else ""))
    write_back(mnt)
    try:
        os.setxattr(mnt, COMMIT_XATTR, name)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENODATA, errno.EOPNOTSUPP):
            raise CtrfsError(f"{mnt}: not a ctrfs mount") from None
        if exc.errno == errno.EEXIST:
            raise CtrfsError(f"image {str(ref)!r} exists") from None
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise CtrfsError(f"{mnt}: permission denied (committing needs CAP_SYS_ADMIN)") from None
        if exc.errno == errno.EROFS:
            raise CtrfsError(f"{mnt}: mounted read-only, nothing to commit") from None
        if exc.errno == errno.EINVAL:
            raise UsageError(f"bad image name {str(ref)!r}") from None
        if exc.errno == errno.ENOSPC:
            raise CtrfsError(f"{mnt}: no space left on the device") from None
        raise CtrfsError(f"{mnt}: commit failed: {exc.strerror}") from None
    if not args.quiet:
        print(f"committed {ref}")
    return 0
