"""`ctrfs` subcommands on a device that has a daemon: the client sends its argv (paths
made absolute against its cwd), the daemon runs the very same command function in a
worker thread against its own engine (tool.Borrowed), and sends back stdout, stderr and
the exit code, which the client passes on as its own.  Output and exit codes are those
of the offline command.  One command at a time; the FUSE session keeps answering (turns).
The client's environment variables that name credentials, certificates, proxies and the
scratch directory go with it (a pull reads the caller's auth.json, not the daemon's)."""
import asyncio
import contextlib
import io
import logging
import os
import sys

from .. import tool

log = logging.getLogger("ctrfs.daemon")
# subcommands that work on a device's engine, and where their DEVICE argument is
ROUTED = {"import", "pull", "commit", "clone", "tag", "rm", "gc", "df", "images"}
# what a command may read from its environment (registry.credentials, the HTTP client)
PASSED_ENV = ("HOME", "XDG_RUNTIME_DIR", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG", "TMPDIR",
              "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
              "http_proxy", "https_proxy", "no_proxy")


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
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        ans = client.request(op="run", argv=list(argv), cwd=os.getcwd(), env=env)
    sys.stdout.write(ans.get("stdout", ""))
    sys.stdout.flush()
    sys.stderr.write(ans.get("stderr", "") or (f"{tool.PROG}: {ans['error']}\n" if not ans.get("ok") else ""))
    return ans.get("code", 8)


async def run_tool(daemon, req):
    argv = [str(a) for a in req.get("argv") or []]
    cwd = req.get("cwd") or "/"
    env = {str(k): str(v) for k, v in (req.get("env") or {}).items() if k in PASSED_ENV}
    async with daemon.tool_lock:
        daemon.tool_running = True
        try:
            return await asyncio.to_thread(_run, daemon, argv, cwd, env)
        finally:
            daemon.tool_running = False


@contextlib.contextmanager
def _environment(env):
    """The client's PASSED_ENV for the length of one command (one runs at a time)."""
    saved = {k: os.environ.get(k) for k in PASSED_ENV}
    for k in PASSED_ENV:
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(daemon, argv, cwd, env):
    from ..cli import main

    out, err = io.StringIO(), io.StringIO()
    with daemon.turns:
        before = {name for name, _e in daemon.engine.snapshots()}
        tool.BORROWED = tool.Borrowed(daemon.engine, daemon.turns.pause, daemon.mounted_at,
                                      daemon.turns.outside)
        here = os.getcwd()
        try:
            os.chdir(cwd)
            with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
            if code:
                _undo(daemon, before, keep_layers=argv[:1] == ["pull"])
        finally:
            tool.BORROWED = None
            os.chdir(here)
    log.info("ran ctrfs %s: status %d", " ".join(argv[:2]), code)
    return {"ok": True, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _undo(daemon, before, keep_layers=False):
    """A command that failed on the live engine must leave nothing for the next commit:
    offline its engine would just be closed.  What it added goes (a failed import's
    layers and scratch tree); every command refuses before it deletes anything.  A pull
    keeps its layers, as offline: each was verified and committed as it came in, so a
    retry resumes from them."""
    from ..catalogue import LAYER_PREFIX

    engine = daemon.engine
    for name in [n for n, _e in engine.snapshots() if n not in before
                 and not (keep_layers and n.startswith(LAYER_PREFIX))]:
        try:
            engine.delete(name)
        except Exception:
            log.exception("cannot drop %r after a failed command", name)
