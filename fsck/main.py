"""fsck.ctrfs: check and repair a ctrfs device, with fsck(8)'s options and exit codes.

    fsck.ctrfs [-n|-y|-p|-a] [-f] [-v] [-C [fd]] [--verify-data] DEVICE

-n opens the device read-only and answers "no" to every repair (a device another ctrfs
process has open read-write, through any path, is refused: exit 8); -y repairs everything;
-p/-a repairs what is safe without asking (older checkpoint, counts, link counts) and
leaves the rest; with none of them fsck.ctrfs checks only (there are no questions to
ask).  -f is accepted for fsck(8)'s sake: ctrfs has no "clean" flag, every run is full.
Exit status, summed: 0 clean, 1 errors corrected, 4 errors left uncorrected,
8 operational error, 16 usage error, 32 cancelled, 128 unexpected internal error."""
import gc
import logging
import sys
import traceback

from ..tool import ToolParser
from ..errors import CorruptError, CtrfsError, DeviceError, UnsupportedError, UsageError

PROG = "fsck.ctrfs"
EXIT_OK, EXIT_FIXED, EXIT_UNCORRECTED = 0, 1, 4
EXIT_OPERATIONAL, EXIT_USAGE, EXIT_CANCELLED, EXIT_LIBRARY = 8, 16, 32, 128
SHOW_PER_CHECK = 20           # problems listed per check without -v

log = logging.getLogger("ctrfs.fsck")


def checker():
    """check_device, imported late: numpy and the engine take a while to load, and a
    Ctrl-C meanwhile must still end in exit 32, not a traceback."""
    from .checks import check_device
    return check_device


class _Parser(ToolParser):
    def error(self, message):
        raise UsageError(f"{message} (see {PROG} --help)")


def build_parser():
    p = _Parser(prog=PROG, usage=f"{PROG} [-n|-y|-p|-a] [-f] [-v] [-C [fd]] [--verify-data] DEVICE",
                description="Check and repair a ctrfs file system.")
    p.add_argument("device", metavar="DEVICE", help="loop file or block device holding the file system")
    p.add_argument("-n", action="store_true", help="check only: open read-only, change nothing")
    p.add_argument("-y", action="store_true", help="repair every problem found")
    p.add_argument("-p", "-a", dest="p", action="store_true",
                   help="repair what is safe without questions; leave the rest (exit 4)")
    p.add_argument("-f", action="store_true", help="check even if clean (every check is full; accepted)")
    p.add_argument("-v", action="store_true", help="say what is checked; tracebacks for internal errors")
    p.add_argument("-C", dest="progress", metavar="fd", type=int,
                   help="progress: a bar (fd 0 or none), or e2fsck progress lines to descriptor fd")
    p.add_argument("--verify-data", action="store_true", help="also re-hash every data block")
    return p


def normalize_argv(argv):
    """fsck(8) passes `-C0`, people type `-C DEVICE`: -C's fd is optional, so a bare -C
    followed by something that is not a number means -C 0."""
    out = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == "-C" and not (i + 1 < len(argv) and argv[i + 1].lstrip("-").isdigit()):
            out.append("0")
    return out


def parse_args(argv):
    args = build_parser().parse_args(normalize_argv(argv))
    modes = [m for m in ("n", "y", "p") if getattr(args, m)]
    if len(modes) > 1:
        raise UsageError(f"only one of -n, -y, -p/-a may be given (got {', '.join('-' + m for m in modes)})")
    args.mode = modes[0] if modes else None
    return args


def make_progress(args):
    from .progress import Progress
    if args.progress is not None and args.progress > 0:
        return Progress(args.device, fd=args.progress)
    if args.progress == 0 or (sys.stdout.isatty() and not args.v):
        return Progress(args.device, stream=sys.stdout)
    return None


def report(args, result):
    """The problems, then one summary line (stdout: stderr is for operational errors)."""
    out = sys.stdout
    shown = {}
    for check, message in result.problems:
        shown[check] = shown.get(check, 0) + 1
        if args.v or shown[check] <= SHOW_PER_CHECK:
            print(f"{check}: {message}", file=out)
    for check, n in shown.items():
        if not args.v and n > SHOW_PER_CHECK:
            print(f"{check}: ... and {n - SHOW_PER_CHECK} more (-v lists them all)", file=out)
    if result.fixed and result.remaining:
        print(f"{PROG}: left uncorrected:", file=out)
        for check, message in result.remaining[:SHOW_PER_CHECK if not args.v else None]:
            print(f"  {check}: {message}", file=out)
    where = f"{args.device}: checkpoint {result.checkpoint}" if result.checkpoint else args.device
    n = len(result.problems)
    st = result.stats
    if not n:
        counts = (f", {st['trees']} trees, {st['inodes']} inodes, {st['nodes']} nodes, {st['data_blocks']} "
                  f"data blocks, {st['segments_used']}/{st['segments']} segments") if st else ""
        print(f"{where}: clean{counts}", file=out)
    elif result.fixed and not result.remaining:
        print(f"{where}: {n} problem{'s' * (n != 1)} found and repaired", file=out)
    elif result.fixed:
        print(f"{where}: {n} problems found, {len(result.remaining)} left uncorrected", file=out)
    else:
        hint = "run fsck.ctrfs -y to repair" if args.mode != "p" else "run fsck.ctrfs -y manually"
        print(f"{where}: {n} problem{'s' * (n != 1)} found, nothing changed ({hint})", file=out)


def run(args):
    if args.v:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if args.mode is None:
        log.info("no -p, -y or -n given: checking only")
    progress = make_progress(args)
    # A check makes millions of short-lived tuples and bytes and few reference cycles; the
    # cyclic collector would walk them again and again (a tenth of the run) for nothing.
    gc.disable()
    try:
        result = checker()(args.device, repair=args.mode or "n", verify_data=args.verify_data,
                              progress=progress)
    finally:
        gc.enable()
        if progress is not None:
            progress.close()
    report(args, result)
    return result.exit_code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    verbose = "-v" in argv
    try:
        args = parse_args(argv)
        verbose = args.v
        return run(args)
    except SystemExit as exc:      # --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UnsupportedError as exc:      # an intact superblock of another version: name the device
        print(f"{PROG}: {args.device}: {exc}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except DeviceError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except CorruptError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_UNCORRECTED
    except CtrfsError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except BrokenPipeError:
        return EXIT_OPERATIONAL
    except Exception as exc:      # a bug: one line, the traceback only when asked for
        print(f"{PROG}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if verbose:
            traceback.print_exc()
        return EXIT_LIBRARY


if __name__ == "__main__":
    sys.exit(main())
