"""umount.fuse.ctrfs: the umount(8) helper that returns only once the daemon is done.

    umount.fuse.ctrfs MOUNTPOINT [-flnrv] [-t TYPE] [-N NS]

umount(8) runs /sbin/umount.<type> (here the type is fuse.ctrfs) instead of unmounting
itself; `make install` links this there.  Unmounting a FUSE mount only tells the daemon
the session is over: it then writes its last checkpoint and closes the device.  A plain
umount returns before that, so `umount DIR && fsck.ctrfs DEV` would find the device in
use.  This helper unmounts and then waits for the daemon process to exit, so after
`umount DIR` the last checkpoint is on the device and the device is released.

`fusermount3 -u` cannot run a helper and returns at once (the kernel waits for the daemon
only on fuseblk mounts, through FUSE_DESTROY, which pyfuse3 does not hand to the file
system); use umount(8).

The daemon records itself in /run/ctrfs/mounts/MAJOR:MINOR (the mount's st_dev): its pid
while it runs, then its exit status; and it adds the utab line that makes umount(8) run
this helper at all (ctrfs.utab).  The helper finds the mount's MAJOR:MINOR in
/proc/self/mountinfo (a stat of the mount point could hang on a stuck daemon).

Exit status (umount(8)'s): 0 unmounted and the last checkpoint written; 1 usage;
32 unmount failed, or the daemon reported that its last commit failed (the device then
keeps its previous checkpoint; the daemon's log says why).
"""
import ctypes
import os
import select
import sys

PROG = "umount.fuse.ctrfs"
RECORDS = "/run/ctrfs/mounts"
EXIT_OK, EXIT_USAGE, EXIT_FAILURE = 0, 1, 32
MNT_FORCE, MNT_DETACH = 1, 2
NOTE_AFTER = 5.0          # seconds of waiting before saying why umount is slow


# ---- the daemon's side ----------------------------------------------------------------
def record_path(st_dev):
    return os.path.join(RECORDS, f"{os.major(st_dev)}:{os.minor(st_dev)}")


def record_start(st_dev, source, target):
    """Called by the daemon once the mount answers: 'PID' (running), and the utab line
    that makes umount(8) run this helper."""
    from . import utab

    os.makedirs(RECORDS, exist_ok=True)
    _write(record_path(st_dev), f"{os.getpid()}\n")
    utab.add(os.path.abspath(source), target)


def record_exit(st_dev, code, target):
    """Called by the daemon after its last checkpoint: 'PID CODE', utab line gone."""
    from . import utab

    _write(record_path(st_dev), f"{os.getpid()} {code}\n")
    utab.remove(target)


def _write(path, text):
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_record(path):
    """(pid, exit code or None while running), or None without a record."""
    try:
        with open(path) as f:
            fields = f.read().split()
        return int(fields[0]), (int(fields[1]) if len(fields) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None


# ---- the helper ----------------------------------------------------------------------------
class Failure(Exception):
    def __init__(self, msg, code=EXIT_FAILURE):
        super().__init__(msg)
        self.code = code


def parse_args(argv):
    target, flags = None, set()
    it = iter(argv)
    for arg in it:
        if arg in ("-t", "-N"):
            if next(it, None) is None:
                raise Failure(f"option {arg} needs an argument", EXIT_USAGE)
        elif arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(EXIT_OK)
        elif arg in ("-V", "--version"):
            from . import version_line
            print(version_line(PROG))
            raise SystemExit(EXIT_OK)
        elif arg.startswith("-") and len(arg) > 1:
            for flag in arg[1:]:
                if flag not in "flnrvi":
                    raise Failure(f"unknown flag -{flag}", EXIT_USAGE)
                flags.add(flag)
        elif target is None:
            target = arg
        else:
            raise Failure(f"usage: {PROG} MOUNTPOINT [-flnrv]", EXIT_USAGE)
    if target is None:
        raise Failure(f"usage: {PROG} MOUNTPOINT [-flnrv]", EXIT_USAGE)
    return target, flags


def unescape(field):
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def find_mount(target):
    """MAJOR:MINOR of the topmost mount at target, or None."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and unescape(fields[4]) == target:
                found = fields[2]
    return found


def umount2(target, flags):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(target), flags) != 0:
        err = ctypes.get_errno()
        raise Failure(f"{target}: {os.strerror(err)}")


def wait_exit(pid, target, verbose):
    """Wait until process pid is gone (pidfd: no polling, no pid reuse race)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(NOTE_AFTER * 1000):
            if verbose or sys.stderr.isatty():
                print(f"{PROG}: {target}: waiting for the daemon to write its last checkpoint",
                      file=sys.stderr)
            poller.poll()
    finally:
        os.close(fd)


def release_view(sock, target):
    """Tell a daemon serving many trees (ctrfs.daemon) that target's view is unmounted; it
    answers after that tree's commit.  True when that was its last view (it exits)."""
    from .daemon.control import Client, NoDaemon

    try:
        with Client(sock) as client:
            ans = client.request(op="release", target=target)
    except (NoDaemon, ConnectionError, OSError):
        return True        # gone already: wait for the pid (it may be writing its last commit)
    if not ans.get("ok"):
        raise Failure(f"{target}: {ans.get('error')}")
    if ans.get("code"):
        raise Failure(f"{target}: the daemon's last commit of this tree failed (status "
                      f"{ans['code']}); the device keeps its previous checkpoint (see the system log)")
    return bool(ans.get("exiting"))


def unmount(target, flags):
    target = os.path.realpath(target) if os.path.isabs(target) or os.path.exists(target) else target
    devno = find_mount(target)
    if devno is None:
        raise Failure(f"{target}: not mounted")
    path = os.path.join(RECORDS, devno)
    rec = read_record(path)
    pidfd_pid = rec[0] if rec and rec[1] is None and os.path.exists(f"/proc/{rec[0]}") else None
    umount2(target, (MNT_DETACH if "l" in flags else 0) | (MNT_FORCE if "f" in flags else 0))
    if pidfd_pid is None or "l" in flags:
        return EXIT_OK     # not a daemon we know of, or lazy: nothing to wait for
    if os.path.lexists(path + ".sock"):
        exiting = release_view(path + ".sock", target)
        if not exiting:
            return EXIT_OK
    wait_exit(pidfd_pid, target, "v" in flags)
    rec = read_record(path)
    if rec and rec[0] == pidfd_pid:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        if rec[1]:
            raise Failure(f"{target}: the daemon's last commit failed (status {rec[1]}); "
                          "the device keeps its previous checkpoint (see the system log)")
    return EXIT_OK


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        return unmount(*parse_args(argv))
    except Failure as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:   # one line, like every ctrfs tool
        print(f"{PROG}: internal error: {type(exc).__name__}: {' '.join(str(exc).split())}",
              file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
