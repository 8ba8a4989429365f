"""The control socket of a device's daemon: where it is, and the client side.

One JSON object per line each way.  The socket is /run/ctrfs/ctl/<identity>.sock, where
the identity is ctrfs.devlock's (the same whichever path names the device), and the
daemon's mount record (ctrfs.unmount) links to it as MAJOR:MINOR.sock, so umount.fuse.ctrfs
finds it from a mount point.  Requests:

  {"op": "serve", "image", "readonly", "clone", "target"}  -> {"ok", "slot", "path"}
  {"op": "bound", "slot", "target"}                         -> {"ok"}
  {"op": "wait", "slot"}                                    -> {"ok", "code"} when it ends
  {"op": "release", "target"}                               -> {"ok", "code", "exiting"}
  {"op": "run", "argv", "cwd", "env"}                       -> {"ok", "code", "stdout", "stderr"}

A failure is {"ok": false, "code": EXIT, "error": "one line"}."""
import json
import os
import socket

from .. import devlock

CTL_DIR = "/run/ctrfs/ctl"
SESSION_DIR = "/run/ctrfs/sessions"


class NoDaemon(Exception):
    """Nothing listens on the device's control socket."""


def device_identity(path):
    """devlock's identity of the device at path (opened read-only, no lock)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return devlock.identity(fd)
    finally:
        os.close(fd)


def socket_path(identity):
    return os.path.join(CTL_DIR, identity + ".sock")


def session_path(identity):
    return os.path.join(SESSION_DIR, identity)


class Client:
    """One connection to a daemon; requests are answered in order."""

    def __init__(self, path, timeout=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            self.sock.close()
            raise NoDaemon(path) from exc
        self.sock.settimeout(timeout)
        self.rfile = self.sock.makefile("rb")

    def request(self, **req):
        """The daemon's answer; ConnectionError when it went away first."""
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        line = self.rfile.readline()
        if not line:
            raise ConnectionError("the daemon closed the control socket")
        return json.loads(line)

    def close(self):
        self.rfile.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect_device(path, timeout=None):
    """A Client of the daemon serving the device at path; NoDaemon if there is none."""
    return Client(socket_path(device_identity(path)), timeout)
