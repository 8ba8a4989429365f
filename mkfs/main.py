"""mkfs.ctrfs: argument parsing and safety checks over ctrfs.mkfs.geometry.make_filesystem."""
import os
import stat
import uuid as uuidlib

from ..tool import ToolParser, format_size, parse_size, run_tool
from ..device import Device
from ..errors import CtrfsError, DeviceError, UsageError
from ..format import constants as C
from . import geometry, probe

PROG = "mkfs.ctrfs"
WIPE_BYTES = 1 << 20   # zeroed at both ends before writing, so old signatures do not linger


def build_parser():
    p = ToolParser(prog=PROG, description="Create a ctrfs file system on a loop file or block device.")
    p.add_argument("device", metavar="DEVICE", help="loop file (created with -s) or block device")
    p.add_argument("-s", "--size", type=parse_size, metavar="SIZE",
                   help="size of the loop file to create or grow to (e.g. 1G, 512M, 4096K)")
    p.add_argument("-b", "--block-size", type=parse_size, default=C.DEFAULT_BLOCK_SIZE, metavar="BYTES",
                   help=f"block size, a power of two from {C.MIN_BLOCK_SIZE} to {C.MAX_BLOCK_SIZE} "
                        f"(default {C.DEFAULT_BLOCK_SIZE})")
    p.add_argument("--segment-size", type=parse_size, metavar="SIZE",
                   help=f"segment size, a multiple of the block size, {C.MIN_SEGMENT_BLOCKS} to "
                        f"{C.MAX_SEGMENT_BLOCKS} blocks (default {C.DEFAULT_SEGMENT_BLOCKS} blocks)")
    p.add_argument("-L", "--label", default="", help=f"volume label (at most {C.LABEL_MAX} bytes)")
    p.add_argument("-U", "--uuid", help="file system UUID (default: random)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing file system")
    p.add_argument("-n", "--dry-run", action="store_true", help="print the layout, write nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks for unexpected errors")
    return p


def check_options(args):
    """Validate every option before the device is touched; returns geometry arguments."""
    bs = args.block_size
    if bs & (bs - 1) or not C.MIN_BLOCK_SIZE <= bs <= C.MAX_BLOCK_SIZE:
        raise UsageError(f"block size must be a power of two from {C.MIN_BLOCK_SIZE} to "
                         f"{C.MAX_BLOCK_SIZE}, got {bs}")
    seg = args.segment_size if args.segment_size is not None else C.DEFAULT_SEGMENT_BLOCKS * bs
    if seg % bs:
        raise UsageError(f"segment size {seg} is not a multiple of the block size {bs}")
    if not C.MIN_SEGMENT_BLOCKS <= seg // bs <= C.MAX_SEGMENT_BLOCKS:
        raise UsageError(f"segment size must be {C.MIN_SEGMENT_BLOCKS} to {C.MAX_SEGMENT_BLOCKS} "
                         f"blocks, got {seg // bs}")
    try:
        label = args.label.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("label is not valid UTF-8") from None
    if len(label) > C.LABEL_MAX:
        raise UsageError(f"label is {len(label)} bytes, at most {C.LABEL_MAX} allowed")
    if b"\0" in label:
        raise UsageError("label contains a NUL byte")
    try:
        fs_uuid = uuidlib.UUID(args.uuid) if args.uuid is not None else uuidlib.uuid4()
    except ValueError:
        raise UsageError(f"bad UUID {args.uuid!r}") from None
    return dict(block_size=bs, segment_blocks=seg // bs, uuid=fs_uuid, label=args.label)


def check_size_option(args, st):
    """-s creates or grows a loop file; it never shrinks one, and a block device is used whole."""
    if args.size is None or st is None:
        return
    if stat.S_ISBLK(st.st_mode):
        raise UsageError("-s sets the size of a loop file; a block device is used whole")
    if args.size < st.st_size:
        raise UsageError(f"{args.device} is {st.st_size} bytes, larger than -s {args.size}; "
                         "a file is never shrunk")


def wipe_ends(dev, block_size):
    """Zero the first and last MiB: other tools' signatures (ext4, btrfs, GPT backup, md)
    live there, and blkid must not keep reporting them over ctrfs."""
    nblocks = dev.size // block_size
    span = min(WIPE_BYTES // block_size, nblocks)
    zero = bytes(block_size)
    chunk = [zero] * min(span, 64)
    for start in (0, nblocks - span):
        for b in range(start, start + span, len(chunk)):
            dev.write(b, chunk[:min(len(chunk), start + span - b)])


def create_file(path, size):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DeviceError(f"{path}: cannot create ({exc.strerror})") from None
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        os.close(fd)
        os.unlink(path)
        raise DeviceError(f"{path}: cannot size to {size} bytes ({exc.strerror})") from None
    os.close(fd)


def summary(path, geo, opts, dry_run):
    bs, seg = geo["block_size"], geo["segment_blocks"]
    size = geo["device_blocks"] * bs
    lines = [
        f"{'would create' if dry_run else 'created'} ctrfs on {path}",
        f"  size          {format_size(size)} ({size} bytes, {geo['device_blocks']} blocks)",
        f"  block size    {bs}",
        f"  segment size  {format_size(seg * bs)} ({seg} blocks)",
        f"  segments      {geo['segment_count']}",
        f"  uuid          {opts['uuid']}",
        f"  label         {opts['label'] or '(none)'}",
    ]
    if dry_run:
        first = geo["first_segment_block"]
        end = first + geo["segment_count"] * seg
        lines += [
            "  layout (blocks):",
            "    0             superblock",
            f"    {geo['checkpoint_slot_a']}, {geo['checkpoint_slot_b']}          checkpoint slots",
            f"    {first}..{end - 1:<10} segments 0..{geo['segment_count'] - 1}",
            f"    {geo['mirror_block']:<13} superblock mirror",
            "  dry run: nothing written",
        ]
    return "\n".join(lines)


def run(args):
    opts = check_options(args)
    path = args.device
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise DeviceError(f"{path}: {exc.strerror}") from None
    if st is None and args.size is None:
        raise DeviceError(f"{path}: no such file or device (give -s SIZE to create a loop file)")
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise DeviceError(f"{path}: not a regular file or block device")
    check_size_option(args, st)
    if st is None:
        geo = geometry.compute_geometry(args.size, opts["block_size"], opts["segment_blocks"])
        if args.dry_run:
            return summary(path, geo, opts, True)
        create_file(path, args.size)
        try:
            return format_device(path, args, opts, created=True)
        except BaseException:
            os.unlink(path)
            raise
    probe.check_not_in_use(path, st)
    return format_device(path, args, opts, created=False)


def format_device(path, args, opts, created):
    dev = Device(path, readonly=args.dry_run)
    try:
        if not created and not args.force:
            found = probe.existing_filesystem(dev)
            if found:
                raise CtrfsError(f"{path} holds {found} (use -f to overwrite)")
        size = max(dev.size, args.size or 0)
        geo = geometry.compute_geometry(size, opts["block_size"], opts["segment_blocks"])
        if args.dry_run:
            return summary(path, geo, opts, True)
        if size > dev.size:
            os.ftruncate(dev.fd, size)
            dev.size = size
        dev.block_size = opts["block_size"]
        wipe_ends(dev, opts["block_size"])
        engine = geometry.make_filesystem(dev, **opts)
        engine.close()
        return summary(path, geo, opts, False)
    finally:
        dev.close()


def main(argv=None):
    def body(args):
        text = run(args)
        if not args.quiet:
            print(text)
        return 0
    return run_tool(PROG, build_parser(), body, argv)
