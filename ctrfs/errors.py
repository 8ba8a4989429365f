"""One error hierarchy: each error carries the exit code a CLI returns and the errno a
FUSE handler answers with."""
import errno as _errno

# Exit codes of the tools (fsck(8) numbering where it applies; see README).
EXIT_OK = 0
EXIT_ERROR = 1          # mkfs/mount/ctrfs: operation failed
EXIT_BAD_IMAGE = 2      # ctrfs import/pull: the source is malformed, hostile or fails its digests
EXIT_REGISTRY = 3       # ctrfs pull/push: the registry is unreachable or refuses the request
EXIT_CORRUPT = 4        # device damaged / errors left uncorrected
EXIT_OPERATIONAL = 8
EXIT_USAGE = 16


class CtrfsError(Exception):
    exit_code = EXIT_ERROR
    errno = _errno.EIO

    def __init__(self, msg, *, errno=None):
        super().__init__(msg)
        if errno is not None:
            self.errno = errno


class CorruptError(CtrfsError):
    """Bytes on the device (or handed to a decoder) that are not valid ctrfs data."""
    exit_code = EXIT_CORRUPT
    errno = _errno.EIO


class UnsupportedError(CorruptError):
    """A valid structure this version cannot handle (another format version, unknown
    incompat feature bits): not damage, so an operational error (8) for every tool, as
    fsck(8) has it for a device it cannot check."""
    exit_code = EXIT_OPERATIONAL


class UsageError(CtrfsError):
    exit_code = EXIT_USAGE
    errno = _errno.EINVAL


class NoSpaceError(CtrfsError):
    errno = _errno.ENOSPC


class DeviceError(CtrfsError):
    """The device cannot be opened or used (missing, busy, too small, read-only)."""
    exit_code = EXIT_OPERATIONAL


class NotCtrfsError(DeviceError):
    """No ctrfs superblock at all (nor a mirror): not damaged ctrfs but something else, an
    operational error (8) as fsck(8) has it for a device it cannot check."""


class FsError(CtrfsError):
    """A POSIX error from the file system layer (ENOENT, EEXIST, ...)."""

    def __init__(self, err, msg=""):
        super().__init__(msg or _errno.errorcode.get(err, str(err)), errno=err)


class BadImageError(CtrfsError):
    """An image source (OCI layout, docker-archive, tar layer) that is malformed, hostile
    (climbs out of the root, lies about sizes) or does not match its digests."""
    exit_code = EXIT_BAD_IMAGE
    errno = _errno.EINVAL


class RegistryError(CtrfsError):
    """A registry that cannot be reached (connection, TLS) or that refuses a request
    (authentication, unknown repository or manifest, an HTTP error after the retries).
    What it serves that is malformed or fails its digests is a BadImageError."""
    exit_code = EXIT_REGISTRY
    errno = _errno.EIO
