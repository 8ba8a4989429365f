"""What mount.ctrfs does with a device: ask the device's daemon to serve the tree the
options name and bind-mount it, or, when the device has no daemon, become it first.

The daemon is made as mount.ctrfs always made it (open and lock the device, mount the FUSE
session, fork), except that the session is mounted at the device's hidden session
directory and the mount point gets a bind of the view, exactly as for every later mount.
Without -f the child is the daemon and the parent binds; with -f the parent is the daemon
(it stays in the foreground) and a child binds."""
import os
import sys

from .. import lazylog, mount as M
from . import binds, control

log = lazylog.get("ctrfs.daemon")
PER_MOUNT = {"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async",
             "dirsync", "noatime", "atime"}


def session_options(cfg, readonly):
    """The session's FUSE options: what every view shares.  Per-mount flags (nodev, nosuid,
    ro, ...) go on each bind instead, so the session itself restricts nothing."""
    opts = {o for o in cfg.fuse_options() if o not in PER_MOUNT} | {"suid", "dev"}
    if readonly:
        opts.add("ro")
    return opts


def mount(args, cfg, mnt):
    """Mount the view the options name at mnt; the exit status."""
    try:
        client = control.connect_device(args.device)
    except (control.NoDaemon, OSError):
        client = None                     # no daemon (or no device: opening says so)
    if client is not None:
        if args.foreground:               # a later mount's client waits: its log on stderr
            M.setup_logging(True, args.verbose)
        with client:
            return attach(client, args, cfg, mnt, wait=args.foreground)
    return start(args, cfg, mnt)


def attach(client, args, cfg, mnt, *, wait):
    try:
        ans = client.request(op="serve", image=cfg.image, readonly=cfg.readonly,
                             clone=cfg.clone, target=mnt)
        if not ans["ok"]:
            raise M.MountError(f"{args.device}: {ans['error']}", ans.get("code", M.EXIT_FAILURE))
        try:
            binds.bind(ans["path"], mnt, binds.mount_flags(cfg.fuse_options()))
        except OSError as exc:
            raise M.MountError(f"{mnt}: {exc.strerror}") from None
        client.request(op="bound", slot=ans["slot"], target=mnt)
        if not wait:
            return M.EXIT_OK
        log.info("mounted %s (%s) on %s", args.device, ans["tree"], mnt)
        done = client.request(op="wait", slot=ans["slot"])
        return done.get("code") or M.EXIT_OK
    except (ConnectionError, OSError) as exc:
        raise M.MountError(f"{args.device}: the file system daemon went away ({exc})") from None


def start(args, cfg, mnt):
    # here only: a mount served by a running daemon (the common case, a container start)
    # never loads the engine, the file system layer and pyfuse3 (a quarter of a second)
    from .server import Daemon, control_listener

    M.setup_logging(args.foreground, args.verbose)
    engine = M.open_engine(args, cfg)
    try:
        identity = control.device_identity(args.device)
        session = control.session_path(identity)
        os.makedirs(control.SESSION_DIR, mode=0o700, exist_ok=True)
        binds.detach(session)             # a killed daemon's dead session
        os.makedirs(session, mode=0o755, exist_ok=True)
        sock_path = control.socket_path(identity)
        sock = control_listener(sock_path)
        daemon = Daemon(engine, cfg, source=args.device, session=session)
        M.fuse_init(daemon.ops, session, session_options(cfg, engine.readonly))
    except BaseException:
        engine.close()
        raise
    engine.log.close()                    # its writer thread does not survive fork
    try:
        pid = os.fork()
    except OSError as exc:
        raise M.MountError(f"cannot fork: {exc.strerror}", M.EXIT_SYSTEM) from None
    daemon_side = (pid != 0) == args.foreground
    if daemon_side:
        code = M.EXIT_FAILURE
        try:
            if not args.foreground:
                os.setsid()
                os.chdir("/")
            code = run(daemon, sock, sock_path, detach_stdio=not args.foreground)
            if not daemon.ever_bound:     # the mount it was started for did not happen
                code = M.EXIT_FAILURE
        finally:
            if not args.foreground:
                import logging    # set up by this function: the daemon logs
                logging.shutdown()
                os._exit(code)
        return code
    # the binding side: a client like any later mount
    sock.close()
    try:
        with control.Client(sock_path) as client:
            code = attach(client, args, cfg, mnt, wait=False)
    except control.NoDaemon:
        raise M.MountError(f"{mnt}: the file system daemon died while starting") from None
    except M.MountError as exc:
        if args.foreground:               # the child of a foreground daemon: say it, go
            print(f"{M.PROG}: {exc}", file=sys.stderr)
            os._exit(exc.code)
        raise
    if args.foreground:
        os._exit(code)
    return code


def run(daemon, sock, sock_path, *, detach_stdio):
    """The daemon's life is mount.serve's (the event loop until the last view ends or a
    signal, then the session unmounted, then daemon.shutdown: every view's last commit,
    the device closed); the mux's committer runs the daemon's own tasks."""
    from .. import unmount

    daemon.sock, daemon.sock_path = sock, sock_path

    def ready():
        devno = unmount.find_mount(daemon.session)
        if devno is not None:
            link = os.path.join(unmount.RECORDS, devno + ".sock")
            try:
                if os.path.lexists(link):
                    os.unlink(link)
                os.symlink(sock_path, link)
                daemon.record_link = link
            except OSError as exc:
                log.warning("cannot link the control socket for umount(8) (%s)", exc)
        if detach_stdio:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)

    return M.serve(daemon.ops, daemon.session, ready, daemon.source)
