"""ctrfs commit MOUNTPOINT NAME[:TAG]: the mounted writable tree becomes an image.  The
request goes to the mount's daemon as a trusted.* xattr on the mount root (the daemon owns
the device); the errno it answers becomes the message."""
import errno
import os

from .. import catalogue
from ..errors import CtrfsError, DeviceError, UsageError
from ..tool import FUSE_TYPES, mount_type

COMMIT_XATTR = "trusted.ctrfs.commit"


def add_parser(sub):
    s = sub.add_parser("commit", help="turn a mount's writable tree into an image NAME[:TAG]")
    s.add_argument("mountpoint", metavar="MOUNTPOINT")
    s.add_argument("name", metavar="NAME[:TAG]")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=run)


def run(args):
    ref = catalogue.parse_reference(os.fsencode(args.name))
    name = ref.key
    mnt = args.mountpoint
    if not os.path.isdir(mnt):
        raise DeviceError(f"{mnt}: no such directory")
    fstype = mount_type(mnt)
    if fstype not in FUSE_TYPES:
        raise CtrfsError(f"{mnt}: not a ctrfs mount" + (f" ({fstype})" if fstype else ""))
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
