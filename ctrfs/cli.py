"""The `ctrfs` command (images, commit, rm, clone, debug) and the plumbing every ctrfs tool
shares: an argparse parser whose errors exit 16, sizes, and one-line error reporting."""
import argparse
import datetime
import errno
import json
import os
import re
import stat
import sys
import traceback

from .errors import EXIT_OPERATIONAL, CorruptError, CtrfsError, DeviceError, UsageError

PROG = "ctrfs"
COMMIT_XATTR = "trusted.ctrfs.commit"
FUSE_TYPES = ("fuse.ctrfs", "fuseblk.ctrfs", "fuse", "fuseblk")


# ---- shared tool plumbing ------------------------------------------------------------
class ToolParser(argparse.ArgumentParser):
    """argparse exits 2 with a usage block; ctrfs tools exit 16 with one line."""

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
    try:
        args = parser.parse_args(argv)
        debug = debug or getattr(args, "verbose", False)
        return body(args)
    except CtrfsError as exc:
        if debug and not isinstance(exc, UsageError):
            traceback.print_exc()
        print(f"{prog}: {one_line(exc)}", file=sys.stderr)
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


def one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


# ---- opening devices -------------------------------------------------------------------
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


# ---- images -------------------------------------------------------------------------------
def split_tag(name):
    """'busybox:1' -> ('busybox', '1'); a ':' followed by '/' is a registry port, not a tag."""
    base, sep, tag = name.rpartition(":")
    if not sep or not base or "/" in tag:
        return name, ""
    return base, tag


def tree_logical_bytes(engine, root):
    """Sum of regular file sizes in an FS tree (for entries committed without a count)."""
    from .format import constants as C
    from .format.items import unpack_inode
    from .tree import Tree

    if not root[0]:
        return 0
    total = 0
    for key, val in Tree(engine.store, C.TREE_FS, root).scan():
        if len(key) == 9 and key[8] == C.ITEM_INODE:
            (mode, *_rest), _inline = unpack_inode(val)
            if stat.S_ISREG(mode):
                total += _rest[4]
    return total


def image_rows(engine):
    from .format import constants as C

    sizes = {}
    rows = []
    for raw_name, e in engine.snapshots():
        name = raw_name.decode("utf-8", "backslashreplace")
        base, tag = split_tag(name)
        root_hash = e["root"][1]
        size = e["logical_bytes"]
        if not size:
            if root_hash not in sizes:
                sizes[root_hash] = tree_logical_bytes(engine, e["root"])
            size = sizes[root_hash]
        created = datetime.datetime.fromtimestamp(e["created_ns"] / 1e9).astimezone()
        rows.append(dict(
            name=name, image=base, tag=tag,
            kind="image" if e["kind"] == C.SNAP_IMAGE else "writable",
            root=root_hash.hex(), size=size, inodes=e["inodes"],
            created=created.isoformat(timespec="seconds"), created_ns=e["created_ns"],
            parent=e["parent_name"].decode("utf-8", "backslashreplace") or None,
            parent_root=e["parent_root"].hex() if any(e["parent_root"]) else None))
    return rows


def cmd_images(args):
    engine, locked = open_engine_readonly(args.device)
    try:
        note_unlocked(locked)
        rows = image_rows(engine)
    finally:
        engine.close()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    hashlen = 64 if args.long else 12
    table = [("NAME", "TAG", "KIND", "ROOT", "SIZE", "CREATED", "PARENT")]
    for r in rows:
        table.append((r["image"], r["tag"] or "-", r["kind"], r["root"][:hashlen],
                      str(r["size"]) if args.bytes else format_size(r["size"]),
                      r["created"], r["parent"] or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


# ---- commit through a mount -------------------------------------------------------------
def mount_type(path):
    """The file system type of the mount whose root is `path`, or None if it is no mount."""
    from .mkfs.probe import mountinfo

    real = os.path.realpath(path)
    found = [fstype for _num, _src, mnt, fstype in mountinfo() if mnt == real]
    return found[-1] if found else None   # the last one is on top


def cmd_commit(args):
    from .engine import check_snap_name

    name = os.fsencode(args.name)
    check_snap_name(name)
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
            raise CtrfsError(f"image {args.name!r} exists") from None
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise CtrfsError(f"{mnt}: permission denied (committing needs CAP_SYS_ADMIN)") from None
        if exc.errno == errno.EROFS:
            raise CtrfsError(f"{mnt}: mounted read-only, nothing to commit") from None
        if exc.errno == errno.EINVAL:
            raise UsageError(f"bad image name {args.name!r}") from None
        if exc.errno == errno.ENOSPC:
            raise CtrfsError(f"{mnt}: no space left on the device") from None
        raise CtrfsError(f"{mnt}: commit failed: {exc.strerror}") from None
    if not args.quiet:
        print(f"committed {args.name}")
    return 0


# ---- offline changes ----------------------------------------------------------------------
def cmd_rm(args):
    engine = open_engine_rw(args.device)
    try:
        for name in args.names:
            engine.delete(os.fsencode(name))
        engine.commit()
    finally:
        engine.close()
    return 0


def cmd_clone(args):
    from .format import constants as C

    engine = open_engine_rw(args.device)
    try:
        kind = C.SNAP_IMAGE if args.image else C.SNAP_WRITABLE
        engine.clone(os.fsencode(args.src), os.fsencode(args.dst), kind)
        engine.commit()
    finally:
        engine.close()
    return 0


# ---- debug -----------------------------------------------------------------------------------
def cmd_debug(args):
    """Superblock, checkpoint and node dumps read the device directly, so they work on a
    device too damaged to open; segment and tree dumps need the engine."""
    from . import debug

    out = sys.stdout
    if args.what in ("dump-segment", "dump-tree"):
        engine, locked = open_engine_readonly(args.device)
        dev = engine.dev
    else:
        dev, locked = open_readonly(args.device)
    try:
        note_unlocked(locked)
        if args.what == "dump-super":
            return debug.dump_super(dev, out)
        if args.what == "dump-checkpoints":
            return debug.dump_checkpoints(dev, out)
        if args.what == "dump-node":
            return debug.dump_node(dev, args.paddr, out)
        if args.what == "dump-segment":
            return debug.dump_segment(engine, args.segment, out)
        return debug.dump_tree(engine, args.name, args.system, out)
    finally:
        dev.close()


def _nonneg_int(text):
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return n


def build_parser():
    p = ToolParser(prog=PROG, description="Manage images and trees on a ctrfs device.")
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks for unexpected errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("images", help="list images and writable trees")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("--json", action="store_true", help="JSON output")
    s.add_argument("--long", action="store_true", help="full root hashes")
    s.add_argument("--bytes", action="store_true", help="sizes in bytes")
    s.set_defaults(func=cmd_images)

    s = sub.add_parser("commit", help="turn a mount's writable tree into an image NAME[:TAG]")
    s.add_argument("mountpoint", metavar="MOUNTPOINT")
    s.add_argument("name", metavar="NAME[:TAG]")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_commit)

    s = sub.add_parser("rm", help="delete images or trees (device not mounted)")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("names", metavar="NAME", nargs="+")
    s.set_defaults(func=cmd_rm)

    s = sub.add_parser("clone", help="clone an image or tree (device not mounted)")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("src", metavar="SRC")
    s.add_argument("dst", metavar="DST")
    s.add_argument("--image", action="store_true", help="make DST an immutable image (default: writable)")
    s.set_defaults(func=cmd_clone)

    s = sub.add_parser("debug", help="print on-disk structures")
    dsub = s.add_subparsers(dest="what", metavar="WHAT", required=True)
    for what, helptext in (("dump-super", "both superblocks"), ("dump-checkpoints", "both checkpoint slots")):
        d = dsub.add_parser(what, help=helptext)
        d.add_argument("device", metavar="DEVICE")
    d = dsub.add_parser("dump-node", help="the tree node stored at block PADDR")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("paddr", metavar="PADDR", type=_nonneg_int)
    d = dsub.add_parser("dump-segment", help="log units and summaries of segment N")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("segment", metavar="N", type=_nonneg_int)
    d = dsub.add_parser("dump-tree", help="every item of an image/tree, or of a system tree")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("name", metavar="NAME", nargs="?")
    d.add_argument("--system", choices=("snap", "ca", "usage", "remap"), help="a system tree instead")
    s.set_defaults(func=cmd_debug)

    from .oci import cli_export
    cli_export.add_parser(sub)
    return p


def main(argv=None):
    return run_tool(PROG, build_parser(), lambda args: args.func(args), argv)


if __name__ == "__main__":
    sys.exit(main())
