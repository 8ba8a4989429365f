"""`ctrfs` subcommands on a device that has a daemon: the client sends its argv (paths
made absolute against its cwd), the daemon runs the very same command function in a
worker thread against its own engine (tool.Borrowed), and sends back stdout, stderr and
the exit code, which the client passes on as its own.  Output and exit codes are those
of the offline command.  One command at a time; the FUSE session keeps answering (turns)."""
import asyncio
import contextlib
import io
import logging
import os
import sys

from .. import tool

log = logging.getLogger("ctrfs.daemon")
# subcommands that work on a device's engine, and where their DEVICE argument is
ROUTED = {"import", "commit", "clone", "tag", "rm", "gc", "df", "images"}


def device_argument(args):
    """The DEVICE a parsed `ctrfs` command names, or None (commit MOUNTPOINT: the xattr)."""
    if args.command not in ROUTED:
        return None
    path = args.mountpoint if args.command == "commit" else getattr(args, "device", None)
    if not path or os.path.isdir(path) or not os.path.exists(path):
        return None
    return path


def forward(args, argv):
    """Run the command in the device's daemon; None when the device has none."""
    from .control import NoDaemon, connect_device

    if tool.BORROWED is not None:        # already inside the daemon
        return None
    device = device_argument(args)
    if device is None:
        return None
    if args.command == "import" and args.source == "-":
        return None                      # stdin stays here: the open fails as "in use"
    try:
        client = connect_device(device)
    except (NoDaemon, OSError):
        return None
    with client:
        ans = client.request(op="run", argv=list(argv), cwd=os.getcwd())
    sys.stdout.write(ans.get("stdout", ""))
    sys.stdout.flush()
    sys.stderr.write(ans.get("stderr", "") or (f"{tool.PROG}: {ans['error']}\n" if not ans.get("ok") else ""))
    return ans.get("code", 8)


async def run_tool(daemon, req):
    argv = [str(a) for a in req.get("argv") or []]
    cwd = req.get("cwd") or "/"
    async with daemon.tool_lock:
        daemon.tool_running = True
        try:
            return await asyncio.to_thread(_run, daemon, argv, cwd)
        finally:
            daemon.tool_running = False


def _run(daemon, argv, cwd):
    from ..cli import main

    out, err = io.StringIO(), io.StringIO()
    with daemon.turns:
        before = {name for name, _e in daemon.engine.snapshots()}
        tool.BORROWED = tool.Borrowed(daemon.engine, daemon.turns.pause, daemon.mounted_at)
        here = os.getcwd()
        try:
            os.chdir(cwd)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
            if code:
                _undo(daemon, before)
        finally:
            tool.BORROWED = None
            os.chdir(here)
    log.info("ran ctrfs %s: status %d", " ".join(argv[:2]), code)
    return {"ok": True, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _undo(daemon, before):
    """A command that failed on the live engine must leave nothing for the next commit:
    offline its engine would just be closed.  What it added goes (a failed import's
    layers and scratch tree); every command refuses before it deletes anything."""
    engine = daemon.engine
    for name in [n for n, _e in engine.snapshots() if n not in before]:
        try:
            engine.delete(name)
        except Exception:
            log.exception("cannot drop %r after a failed command", name)
