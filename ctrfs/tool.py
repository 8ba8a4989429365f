"""What every ctrfs command-line tool shares: an argparse parser whose errors exit 16 with
one line, sizes, one-line error reporting with the documented exit codes, opening devices,
and finding mounts.  `ctrfs`, `mkfs.ctrfs`, `fsck.ctrfs` and `mount.ctrfs` use it; it
imports none of them."""
import argparse
import os
import re
import sys
import traceback

from .errors import (EXIT_OPERATIONAL, BadImageError, CorruptError, CtrfsError, DeviceError, RegistryError,
                     UsageError)

PROG = "ctrfs"
FUSE_TYPES = ("fuse.ctrfs", "fuseblk.ctrfs", "fuse", "fuseblk")


class ToolParser(argparse.ArgumentParser):
    """argparse exits 2 with a usage block; ctrfs tools exit 16 with one line.  Every tool
    and subcommand answers -V / --version, as e2fsprogs' tools do."""

    def __init__(self, *args, **kw):
        from . import version_line

        super().__init__(*args, **kw)
        self.add_argument("-V", "--version", action="version", version=version_line(self.prog.split()[0]))

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgtpe]?)(i?b)?\s*$", re.I)


def parse_size(text):
    """'4096', '4K', '512M', '1G', '2GiB' -> bytes (binary multiples)."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (want e.g. 4096, 512M, 1G)")
    n = int(m.group(1)) << (10 * " kmgtpe".index(m.group(2).lower() or " "))
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return n


def format_size(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def run_tool(prog, parser, body, argv=None):
    """Parse, run, and turn every failure into one stderr line and an exit code: the
    error's own for CtrfsError, 8 (operational) for anything unexpected.  -v or
    CTRFS_DEBUG=1 adds the traceback of unexpected errors."""
    debug = bool(os.environ.get("CTRFS_DEBUG"))
    args = None
    try:
        args = parser.parse_args(argv)
        debug = debug or getattr(args, "verbose", False)
        return body(args)
    except CtrfsError as exc:
        if debug and not isinstance(exc, UsageError):
            traceback.print_exc()
        names_source = isinstance(exc, (BadImageError, RegistryError))     # not the device
        msg = one_line(exc) if names_source else naming_device(args, one_line(exc))
        print(f"{prog}: {msg}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:
        sys.stderr.close()   # output piped into `head`: not an error worth a line
        return 1
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except Exception as exc:  # the last line of defence: one line, exit 8
        if debug:
            traceback.print_exc()
        print(f"{prog}: internal error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_OPERATIONAL


def naming_device(args, msg):
    """Every message of a command on a device names the device, as e2fsprogs' do (but
    not a bad image source's: that message names the source)."""
    device = getattr(args, "device", None)
    if device and not msg.startswith(device + ":"):
        return f"{device}: {msg}"
    return msg


def one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


# ---- opening devices -------------------------------------------------------------------
class Borrowed:
    """A daemon's engine lent to a command run inside the daemon (ctrfs.daemon.tools):
    closing it is the daemon's business, pause() lets the daemon's requests run, `with
    idle():` lets them run while the command waits on something else, and mounted_at(tree)
    names the mount point of a served tree."""

    def __init__(self, engine, pause, mounted_at, idle):
        self._engine = engine
        self.pause = pause
        self.mounted_at = mounted_at
        self.idle = idle

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def close(self):
        pass


BORROWED = None         # set while a command runs inside a daemon: what every open returns


def open_readonly(path):
    """Open a device for reading.  A read-write mount holds an exclusive flock; reading
    still works then, without the lock, from the last checkpoint on the device.
    Returns (device, locked)."""
    from .device import Device

    class Unlocked(Device):
        def _lock(self):
            try:
                super()._lock()
                self.locked = True
            except DeviceError:
                self.locked = False

    dev = Unlocked(path, readonly=True)
    return dev, dev.locked


def open_engine_readonly(path, attempts=3):
    """(engine, locked).  Without the lock a daemon may reuse blocks of the checkpoint
    being read (two commits later); a CorruptError then is retried on a fresh open."""
    from .engine import Engine

    if BORROWED is not None:
        return BORROWED, True
    for attempt in range(attempts):
        dev, locked = open_readonly(path)
        try:
            return Engine.open(dev), locked
        except CorruptError:
            dev.close()
            if locked or attempt == attempts - 1:
                raise
        except BaseException:
            dev.close()
            raise


def open_engine_rw(path):
    from .device import Device
    from .engine import Engine

    if BORROWED is not None:
        return BORROWED
    dev = Device(path)
    try:
        return Engine.open(dev)
    except BaseException:
        dev.close()
        raise


def note_unlocked(locked):
    if not locked:
        print(f"{PROG}: note: the device is in use (mounted read-write?); "
              "showing its last checkpoint", file=sys.stderr)


# ---- arguments and mounts ----------------------------------------------------------
def nonneg_int(text):
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return n


def mount_type(path):
    """The file system type of the mount whose root is `path`, or None if it is no mount."""
    from .mkfs.probe import mountinfo

    real = os.path.realpath(path)
    found = [fstype for _num, _src, mnt, fstype in mountinfo() if mnt == real]
    return found[-1] if found else None   # the last one is on top
