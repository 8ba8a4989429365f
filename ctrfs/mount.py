"""mount.ctrfs: mount a ctrfs device through FUSE, as a mount(8) helper.

    mount.ctrfs DEVICE MOUNTPOINT [-sfnv] [-o OPTIONS]
    mount.ctrfs -V | --version

After `make install` (a link in /sbin), `mount -t ctrfs DEVICE DIR -o ...` and fstab
lines run it.  One daemon per device serves every tree mounted from it (ctrfs.daemon):
the first mount opens the device (an exclusive lock for rw, shared for ro), mounts the
daemon's FUSE session and detaches it into the background; every mount point is a bind
mount of one tree of that session, and later mounts of the device ask the running
daemon for theirs.  Errors reach the terminal, and the mount exists when the command
returns.  `umount DIR`, `fusermount3 -u DIR`, SIGTERM or SIGINT end
the daemon, which then commits (a checkpoint) and closes the device.  `umount DIR`
returns only after that, through the umount.fuse.ctrfs helper (ctrfs.unmount);
`fusermount3 -u` and signals return at once.

Flags: -f stay in the foreground (log to stderr), -v verbose, -s sloppy (ignore unknown
options), -n accepted (no mtab to write).  Note that mount(8) -f means "fake": this
helper follows the FUSE convention (foreground) instead.

Options (-o, comma-separated, may repeat):
  ro / rw             read-only (the device is opened read-only) or read-write (default)
  clone=ID            with image=NAME[:TAG] (an image) and rw: mount the writable clone
                      "@clone/NAME:TAG/ID" instead, created on first use: one per container
  image=NAME[:TAG]    with ro: mount image NAME:TAG itself (immutable; TAG defaults to
                      latest).  With rw: mount the writable clone "@clone/NAME:TAG",
                      created from the image if missing (so every rw mount of the image
                      continues the same clone).  A writable tree (@default, @clone/...,
                      or one made by `ctrfs clone`) is mounted as it is.  Without image=
                      the device's default tree @default is mounted (made empty again
                      if it was deleted).
  fsync=ignore|honor  ignore (default): fsync returns at once, data reaches the device
                      with the periodic commit and at umount; honor: fsync commits
  commit=SECONDS      interval of the periodic commit of changed data (default 5)
  cache=SIZE          memory bound, e.g. 256M (default): half for dirty file data
                      (written out when full), half for the decoded tree node cache
  FUSE / VFS options  passed to the kernel: suid nosuid dev nodev exec noexec sync async
                      dirsync atime noatime allow_other allow_root default_permissions
                      auto_unmount fsname= subtype=
  ignored             defaults auto noauto user users nouser owner group _netdev nofail
                      loop relatime norelatime strictatime nostrictatime lazytime
                      nolazytime diratime nodiratime iversion noiversion mand nomand
                      silent loud user= max_read= comment= x-* (ctrfs never updates atime)

Mounted by root, allow_other, default_permissions (kernel permission checks: containers
run processes under many uids) and suid are on unless nosuid is given; nodev is on unless
dev is given (images come from strangers: their device nodes stay inert, as in the layers
containers/storage mounts; a container gets its /dev from the runtime).  fsname is DEVICE,
the type fuse.ctrfs.

Exit status (mount(8)'s): 0 mounted; 1 incorrect invocation or permissions (bad or
unknown option, missing argument, device not accessible); 2 system error (fork failed);
32 mount failure (missing device or mount point, not a ctrfs device, damaged, device
busy, no such image, FUSE unavailable, the daemon died while starting).
"""
import os
import signal
import sys
import threading

from . import lazylog
from .errors import CorruptError, CtrfsError, DeviceError, NotCtrfsError, UnsupportedError

PROG = "mount.ctrfs"
EXIT_OK, EXIT_USAGE, EXIT_SYSTEM, EXIT_FAILURE = 0, 1, 2, 32
READ_AHEAD_KB = 1024
DEFAULT_CACHE = 256 << 20
DEFAULT_COMMIT = 5.0

KERNEL_OPTIONS = {"ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "sync", "async",
                  "dirsync", "atime", "noatime", "allow_other", "allow_root", "default_permissions",
                  "auto_unmount"}
IGNORED_OPTIONS = {"defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group",
                   "_netdev", "nofail", "loop", "relatime", "norelatime", "strictatime",
                   "nostrictatime", "lazytime", "nolazytime", "diratime", "nodiratime",
                   "iversion", "noiversion", "mand", "nomand", "silent", "loud"}
IGNORED_PREFIXES = ("x-", "comment=", "user=", "max_read=")

log = lazylog.get("ctrfs.mount")


class MountError(Exception):
    def __init__(self, msg, code=EXIT_FAILURE):
        super().__init__(msg)
        self.code = code


# ---- command line ------------------------------------------------------------------------
class Args:
    def __init__(self):
        self.device = self.mountpoint = None
        self.foreground = self.verbose = self.sloppy = False
        self.options = []


def parse_args(argv):
    """getopt-style, as mount(8) calls helpers: options may follow the two operands."""
    args, operands = Args(), []
    it = iter(argv)
    for arg in it:
        if arg == "-o" or arg in ("-t", "-N"):
            val = next(it, None)
            if val is None:
                raise MountError(f"option {arg} needs an argument", EXIT_USAGE)
            if arg == "-o":
                args.options += [o for o in val.split(",") if o]
            elif arg == "-N":
                raise MountError("-N (mount namespaces) is not supported", EXIT_USAGE)
        elif arg.startswith("-o"):
            args.options += [o for o in arg[2:].split(",") if o]
        elif arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(EXIT_OK)
        elif arg in ("-V", "--version"):
            from . import version_line
            print(version_line(PROG))
            raise SystemExit(EXIT_OK)
        elif arg.startswith("-") and len(arg) > 1 and arg != "--":
            for flag in arg[1:]:
                if flag == "f":
                    args.foreground = True
                elif flag == "v":
                    args.verbose = True
                elif flag == "s":
                    args.sloppy = True
                elif flag != "n":
                    raise MountError(f"unknown flag -{flag} (usage: {PROG} DEVICE MOUNTPOINT "
                                     "[-sfnv] [-o OPTIONS])", EXIT_USAGE)
        elif arg != "--":
            operands.append(arg)
    if len(operands) != 2:
        raise MountError(f"usage: {PROG} DEVICE MOUNTPOINT [-sfnv] [-o OPTIONS]", EXIT_USAGE)
    args.device, args.mountpoint = operands
    return args


class Config:
    """The meaning of the -o list."""

    def __init__(self, options, *, sloppy=False, device=""):
        self.readonly = False
        self.image = None
        self.clone = None
        self.fsync = "ignore"
        self.commit_interval = DEFAULT_COMMIT
        self.cache = DEFAULT_CACHE
        self.kernel = {}             # FUSE option -> True, in order given (last wins)
        self.fsname, self.subtype = device, "ctrfs"
        for opt in options:
            self._one(opt, sloppy)

    def _one(self, opt, sloppy):
        key, eq, val = opt.partition("=")
        if opt in ("ro", "rw"):
            self.readonly = opt == "ro"
        elif key == "image" and eq:
            self.image = val
        elif key == "clone" and eq:
            self.clone = val
        elif key == "fsync" and val in ("ignore", "honor"):
            self.fsync = val
        elif key == "commit" and eq:
            try:
                self.commit_interval = float(val)
            except ValueError:
                raise MountError(f"bad commit interval {val!r} (seconds)", EXIT_USAGE) from None
            if not 0 < self.commit_interval <= 86400:
                raise MountError(f"bad commit interval {val!r} (seconds)", EXIT_USAGE)
        elif key == "cache" and eq:
            try:
                from .tool import parse_size
                self.cache = parse_size(val)
            except Exception:
                raise MountError(f"bad cache size {val!r} (want e.g. 256M)", EXIT_USAGE) from None
        elif key == "fsname" and eq:
            self.fsname = val
        elif key == "subtype" and eq:
            self.subtype = val
        elif opt in ("remount", "bind", "rbind", "move"):
            raise MountError(f"-o {opt} is not supported (umount, then mount again)", EXIT_USAGE)
        elif opt in KERNEL_OPTIONS:
            self.kernel[opt] = True
        elif opt in IGNORED_OPTIONS or opt.startswith(IGNORED_PREFIXES):
            pass
        elif not sloppy:
            raise MountError(f"unknown or bad option {opt!r}", EXIT_USAGE)

    def fuse_options(self):
        opts = {o for o in self.kernel if o not in ("ro", "rw")}
        if os.geteuid() == 0:
            # nodev unless -o dev: an image's device nodes are a stranger's (a /dev/sda 0666
            # would be a raw disk for every user of the host); set-ID bits stay, images need them.
            for default, other in (("allow_other", None), ("suid", "nosuid"), ("nodev", "dev")):
                if other not in opts:
                    opts.add(default)
        opts.add("default_permissions")
        if self.readonly:
            opts.add("ro")
        opts.add("fsname=" + self.fsname.replace("\\", "\\\\").replace(",", "\\,"))
        opts.add("subtype=" + self.subtype)
        return opts


# ---- opening -----------------------------------------------------------------------------------
def open_engine(args, cfg):
    """The device's Engine (opened and locked as the options say), errors as MountError."""
    from .device import Device
    from .engine import Engine, read_superblock

    dev_path = args.device
    if not os.path.exists(dev_path):
        raise MountError(f"{dev_path}: no such file or device")
    want = os.R_OK | (0 if cfg.readonly else os.W_OK)
    if not os.access(dev_path, want):
        raise MountError(f"{dev_path}: permission denied", EXIT_USAGE)
    try:
        dev = Device(dev_path, readonly=cfg.readonly)
    except DeviceError as exc:
        raise MountError(str(exc)) from None
    try:
        try:
            read_superblock(dev)
        except NotCtrfsError as exc:
            raise MountError(str(exc)) from None
        except UnsupportedError as exc:
            raise MountError(f"{dev_path}: {exc}") from None
        except CorruptError as exc:
            raise MountError(f"{dev_path}: not a ctrfs file system ({exc})") from None
        try:
            return Engine.open(dev, cache_bytes=max(1 << 20, cfg.cache // 2))
        except CorruptError as exc:
            raise MountError(f"{dev_path}: {exc} (run fsck.ctrfs)") from None
        except CtrfsError as exc:
            raise MountError(f"{dev_path}: {exc}") from None
    except BaseException:
        dev.close()
        raise


# ---- mounting ------------------------------------------------------------------------------------
def fuse_init(ops, mountpoint, options):
    """pyfuse3.init with libfuse's own complaints (it prints to fd 2) folded into one line."""
    import tempfile

    import pyfuse3

    saved = os.dup(2)
    with tempfile.TemporaryFile() as err:
        os.dup2(err.fileno(), 2)
        try:
            pyfuse3.init(ops, mountpoint, options)
        except RuntimeError as exc:
            os.dup2(saved, 2)
            err.seek(0)
            said = " ".join(err.read().decode(errors="replace").split())
            raise MountError(f"{mountpoint}: {said or exc}") from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def raise_read_ahead(mountpoint, kb=READ_AHEAD_KB):
    """Big reads arrive as big FUSE requests only with a bigger bdi readahead.  Only once
    FUSE_INIT is answered: the kernel lowers the bdi's readahead to what INIT settled."""
    bdi = "?"
    try:
        st = os.stat(mountpoint)      # served by the loop: returns once INIT is done
    except OSError as exc:
        log.warning("cannot stat the mount point %s: %s", mountpoint, exc)
        return None
    try:
        bdi = f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb"
        with open(bdi, "w") as f:
            f.write(str(kb))
    except OSError as exc:
        log.info("cannot raise the readahead (%s): %s", bdi, exc)
    return st.st_dev


def serve(ops, mountpoint, ready=None, source=None):
    """The daemon's life: the event loop until umount or a signal, then unmount, commit,
    close.  Returns the exit status (0 when the last commit made it to the device).
    ready() is called once the kernel's INIT is answered and readahead raised.  The
    daemon's record (ctrfs.unmount) lets umount(8) wait for the last checkpoint.

    The loop is asyncio on uvloop (pyfuse3.asyncio): each FUSE request costs the loop
    about half of what trio costs, and the handlers are synchronous, so nothing needs
    trio's structured concurrency."""
    import asyncio

    import pyfuse3
    import pyfuse3.asyncio
    import uvloop

    from . import unmount

    pyfuse3.asyncio.enable()
    st_dev = None

    def started():
        # a thread: the stat inside waits for the loop to answer INIT and GETATTR
        nonlocal st_dev
        st_dev = raise_read_ahead(mountpoint)
        try:
            if st_dev is not None:
                unmount.record_start(st_dev, source or ops.fs.engine.dev.path, mountpoint)
        except OSError as exc:
            log.warning("cannot record the daemon for umount(8) (%s): umount will not wait", exc)
        if ready is not None:
            ready()

    def on_signal(sig):
        log.info("signal %d: unmounting", sig)
        pyfuse3.terminate()

    def on_loop_error(loop, context):
        # pyfuse3.asyncio's fd reader may fire twice before its done callback removes it:
        # the second Future.set_result finds the future done.  Harmless; not an error.
        if isinstance(context.get("exception"), asyncio.InvalidStateError):
            log.debug("ignored: %s", context.get("message"))
            return
        loop.default_exception_handler(context)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(on_loop_error)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, on_signal, sig)
        tasks = [] if ops.readonly else [asyncio.create_task(ops.committer())]
        threading.Thread(target=started, name="ctrfs-started", daemon=True).start()
        try:
            await pyfuse3.main()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    code = EXIT_OK
    try:
        uvloop.run(main())
    except BaseException:
        log.exception("FUSE main loop failed")
        code = EXIT_FAILURE
    finally:
        pyfuse3.close(unmount=True)
    try:
        ops.shutdown()
    except Exception:
        log.exception("final commit failed: the device keeps its last checkpoint")
        code = EXIT_FAILURE
    if st_dev is not None:
        try:
            unmount.record_exit(st_dev, code, mountpoint)
        except OSError as exc:
            log.warning("cannot record the daemon's exit for umount(8): %s", exc)
    return code


def setup_logging(foreground, verbose):
    import logging

    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if foreground:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        h.setLevel(logging.DEBUG if verbose else logging.WARNING)
    else:
        # No terminal once detached: syslog, or the kernel log (dmesg) where no syslog runs.
        fmt = logging.Formatter(f"{PROG}[%(process)d]: %(name)s %(levelname)s: %(message)s")
        if os.path.exists("/dev/log"):
            import logging.handlers
            h = logging.handlers.SysLogHandler("/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            h.setLevel(logging.DEBUG if verbose else logging.INFO)
        elif os.access("/dev/kmsg", os.W_OK):
            h = logging.StreamHandler(open("/dev/kmsg", "w"))
            h.setLevel(logging.DEBUG if verbose else logging.WARNING)
        else:
            h = logging.NullHandler()
        h.setFormatter(fmt)
    root.addHandler(h)
    # pyfuse3's debug chatter is not ours to show
    logging.getLogger("pyfuse3").setLevel(logging.INFO)


def mount(args):
    from .daemon import start

    cfg = Config(args.options, sloppy=args.sloppy, device=args.device)
    if not os.path.isdir(args.mountpoint):
        raise MountError(f"{args.mountpoint}: mount point does not exist" if not os.path.exists(args.mountpoint)
                         else f"{args.mountpoint}: mount point is not a directory")
    mnt = os.path.realpath(args.mountpoint)    # now: once mounted, a stat would wait for us
    # one daemon per device serves every tree mounted from it (ctrfs.daemon)
    return start.mount(args, cfg, mnt)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        return mount(parse_args(argv))
    except MountError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:   # one line, like every ctrfs tool; CTRFS_DEBUG=1 for the trace
        if os.environ.get("CTRFS_DEBUG"):
            import traceback
            traceback.print_exc()
        print(f"{PROG}: internal error: {type(exc).__name__}: {' '.join(str(exc).split())}",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
