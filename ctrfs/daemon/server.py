"""The daemon of one device: its engine, its views, the FUSE session they share, the
control socket, the periodic commit, and the watch on the mount table that ends a view
once its last bind mount is gone (umount, umount -l, fusermount3 -u alike)."""
import asyncio
import json
import logging
import os
import threading

import pyfuse3

from .. import catalogue
from ..errors import CtrfsError
from ..files import DirtyBudget
from ..format import constants as C
from ..fs import save_request_counts
from ..unmount import find_mount
from . import binds, kino
from .mux import MuxOperations
from .turns import Turns
from .views import View

log = logging.getLogger("ctrfs.daemon")
EXIT_OK, EXIT_USAGE, EXIT_FAILURE = 0, 1, 32
WATCH_INTERVAL = 0.5          # seconds between looks at the mount table
PENDING_CHECK = 0.5           # seconds between looks at the memory that waits for a commit
CLONE_ID_MAX = 64


class DaemonError(Exception):
    pass


class Refused(Exception):
    def __init__(self, msg, code=EXIT_FAILURE):
        super().__init__(msg)
        self.code = code


def clone_name(image_key, clone_id):
    """The writable tree of clone=ID of an image: @clone/NAME:TAG/ID (a tag has no '/', so
    the ID is what follows the last one)."""
    ok = (clone_id and len(clone_id) <= CLONE_ID_MAX and clone_id[0] not in "-."
          and all(c.isascii() and (c.isalnum() or c in "_.-") for c in clone_id))
    if not ok:
        raise Refused(f"bad clone id {clone_id!r} (want 1-{CLONE_ID_MAX} of A-Z a-z 0-9 _ . -, "
                      "not starting with . or -)", EXIT_USAGE)
    key = catalogue.clone_key(image_key) + b"/" + clone_id.encode()
    if len(key) > C.SNAP_NAME_MAX:
        raise Refused(f"clone name {key.decode()!r} is too long", EXIT_USAGE)
    return key


class Daemon:
    def __init__(self, engine, cfg, *, source, session, devno=None):
        self.engine = engine
        self.cfg = cfg
        self.source = source
        self.session = session            # where the session is mounted
        self.devno = devno                # its MAJOR:MINOR, once mounted
        self.views = {}                   # slot -> View
        self.dirty = DirtyBudget(cfg.cache // 2)   # every view's dirty blocks together
        self.next_slot = 1
        self.ops = MuxOperations(self)
        self.turns = Turns()
        self.tool_running = False
        self.tool_lock = asyncio.Lock()
        self.loop = self.loop_thread = None     # set by tasks(), once the loop runs
        self.sock = self.sock_path = self.record_link = None
        self.stopping = False
        self.ever_bound = False

    # ---- views ---------------------------------------------------------------------------
    def tree_for(self, image, readonly, clone_id):
        engine = self.engine
        if not readonly and engine.readonly:
            raise Refused("in use, mounted read-only (a read-write mount needs "
                          "the device to itself: umount the read-only mounts first)")
        if clone_id is None:
            return catalogue.mount_tree(engine, image, readonly=readonly, log=log)
        if image is None or readonly:
            raise Refused("clone=ID goes with image=NAME[:TAG] and a read-write mount", EXIT_USAGE)
        key = catalogue.resolve(engine, image)
        if engine.snapshot(key)["kind"] != C.SNAP_IMAGE:
            raise Refused(f"{catalogue.shown(key)} is a writable tree, not an image: clone=ID "
                          "clones images", EXIT_USAGE)
        name = clone_name(key, clone_id)
        if engine.snapshot(name) is None:
            engine.clone(key, name)
            engine.commit()
            log.info("created writable clone %s", catalogue.shown(name))
        return name

    def add_view(self, image=None, readonly=False, clone_id=None):
        """A new view of the tree the mount options name."""
        if self.stopping:
            raise Refused("the daemon is shutting down")
        try:
            name = self.tree_for(image, readonly, clone_id)
        except catalogue.BadNameError as exc:
            raise Refused(str(exc), EXIT_USAGE) from None
        except CtrfsError as exc:
            raise Refused(str(exc)) from None
        for v in self.views.values():
            if v.name == name:
                where = ", ".join(sorted(v.targets)) or "being mounted"
                raise Refused(f"tree {v.shown} is in use (busy: mounted at {where})")
        if self.next_slot > kino.MAX_SLOT:
            raise Refused(f"this daemon has served {kino.MAX_SLOT} trees; "
                          "umount them all to start afresh")
        slot, self.next_slot = self.next_slot, self.next_slot + 1
        view = View(self.engine, name, slot, writable=not readonly,
                    budget=self.dirty, fsync=self.cfg.fsync,
                    commit_interval=self.cfg.commit_interval)
        self.views[slot] = view
        log.info("serving %s as view %d", view.shown, slot)
        return view

    def mounted_at(self, name):
        """Where the tree `name` is mounted (for `ctrfs rm`), or None."""
        for v in self.views.values():
            if v.name == name:
                return ", ".join(sorted(v.targets)) or "a mount point being set up"
        return None

    def view_path(self, view):
        return os.path.join(self.session, str(view.slot))

    def bound(self, view, target):
        view.targets.add(target)
        view.bound = self.ever_bound = True
        try:
            binds.add_utab(self.source, target, view.slot)
        except OSError as exc:
            log.warning("cannot add the utab line of %s (%s): umount will not wait", target, exc)

    def maybe_end(self, view):
        if (self.views.get(view.slot) is view and view.bound and not view.targets
                and view.handles <= 0):
            self.end_view(view)

    def end_view(self, view):
        """Commit the view's tree and stop serving it; the daemon stops with its last."""
        if self.views.pop(view.slot, None) is None:
            return view.code
        code = view.end()
        log.info("view %d (%s) ended, status %d", view.slot, view.shown, code)
        for target in view.targets:
            binds.detach(target)
        for ev in view.waiters:
            self.wake(ev)
        if not self.views:
            self.stop()
        return code

    def stop(self):
        if not self.stopping:
            self.stopping = True
            pyfuse3.terminate()

    def end_all(self):
        code = EXIT_OK
        for view in list(self.views.values()):
            code = self.end_view(view) or code
        return code

    def release(self, target):
        """umount.fuse.ctrfs has unmounted target: the view ends once nothing holds it."""
        for view in self.views.values():
            if target in view.targets:
                view.targets.discard(target)
                self.maybe_end(view)
                return view
        return None

    # ---- background tasks -------------------------------------------------------------
    def has_changes(self):
        return any(v.has_changes() for v in self.views.values())

    def commit(self):
        """One checkpoint for every served tree (the engine flushes each view's data)."""
        view = next((v for v in self.views.values() if v.fs.writable), None)
        if view is None:
            return
        try:
            view.ops.commit()
        finally:
            if self.engine.failed is not None:
                for v in self.views.values():
                    v.fs.writable = False

    async def committer(self):
        """A commit every commit= seconds, or sooner when the changes waiting for it hold
        more memory than half the dirty budget (a long write must not grow the daemon)."""
        step = min(PENDING_CHECK, self.cfg.commit_interval)
        waited = 0.0
        while True:
            await asyncio.sleep(step)
            waited += step
            if waited < self.cfg.commit_interval and self.engine.pending_bytes() <= self.dirty.limit // 2:
                continue
            if self.tool_running:       # an import's half-stored layers stay out of checkpoints
                continue
            waited = 0.0
            with self.turns:
                if self.engine.commit_due(self.has_changes()):
                    try:
                        self.commit()
                    except Exception:
                        log.exception("periodic commit failed")

    async def watch(self):
        """Views whose bind mounts all went away (fusermount3 -u, umount -l) end."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if self.devno is None:
                self.devno = find_mount(self.session)
                continue
            try:
                mounts = binds.session_mounts(self.devno)
            except Exception:                  # the daemon must outlive any one look
                log.exception("cannot read the mount table")
                continue
            with self.turns:
                for view in list(self.views.values()):
                    if not view.bound:
                        continue
                    seen = mounts.get(f"/{view.slot}", set())
                    # gone in two looks in a row: a table read while mounts change may miss a line
                    gone = {t for t in view.targets if t not in seen}
                    view.targets -= gone & view.missing
                    view.missing = gone
                    self.maybe_end(view)

    async def tasks(self):
        """What runs beside the FUSE loop (started by mount.serve as the ops' committer)."""
        self.loop, self.loop_thread = asyncio.get_running_loop(), threading.get_ident()
        async with asyncio.TaskGroup() as group:
            if not self.engine.readonly:
                group.create_task(self.committer())
            group.create_task(self.watch())
            group.create_task(self.serve_control(self.sock))

    def wake(self, ev):
        """Set a waiter's event from the loop's thread (end_view also runs in a tool's
        worker thread, and after the loop at shutdown, when nobody waits any more)."""
        if self.loop is None or self.loop.is_closed():
            return
        if threading.get_ident() == self.loop_thread:
            ev.set()
        else:
            self.loop.call_soon_threadsafe(ev.set)

    def shutdown(self):
        """After the loop (the session is unmounted): every view's last commit, the
        control socket gone, the device closed.  Raises when a commit failed: serve() then
        exits non-zero."""
        self.stopping = True
        try:
            code = self.end_all()
        finally:
            forget_socket(self.sock_path, self.sock)
            if self.record_link:
                try:
                    os.unlink(self.record_link)
                except OSError:
                    pass
            self.engine.close()
            save_request_counts()
        if code:
            raise DaemonError("a tree's last commit failed (see above)")

    # ---- the control socket -------------------------------------------------------------------
    async def serve_control(self, sock):
        server = await asyncio.start_unix_server(self.connection, sock=sock, limit=1 << 20)
        async with server:
            await server.serve_forever()

    async def connection(self, reader, writer):
        owned = []
        buf = b""
        try:
            while True:
                while b"\n" not in buf:
                    data = await reader.read(65536)
                    if not data:
                        return
                    buf += data
                line, _, buf = buf.partition(b"\n")
                try:
                    req = json.loads(line)
                    if req.get("op") == "run":
                        from .tools import run_tool
                        answer = await run_tool(self, req)
                    else:
                        answer = await self.answer(req, owned)
                except Refused as exc:
                    answer = {"ok": False, "code": exc.code, "error": str(exc)}
                except Exception as exc:
                    log.exception("control request failed")
                    answer = {"ok": False, "code": EXIT_FAILURE,
                              "error": f"internal error: {type(exc).__name__}: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        except asyncio.CancelledError:
            # the loop ends with the daemon: a client still connected just goes (Python
            # 3.11's stream callback would log a cancelled handler as an error)
            pass
        finally:
            writer.close()
            with self.turns:
                for view in owned:        # a mount that never got bound (mount.ctrfs died)
                    if not view.bound:
                        self.end_view(view)
                if not self.views:
                    self.stop()

    async def answer(self, req, owned):
        """The turn is held only by the synchronous parts: waits hold none."""
        op = req.get("op")
        if op == "serve":
            with self.turns:
                view = self.add_view(req.get("image"), bool(req.get("readonly")), req.get("clone"))
            owned.append(view)
            return {"ok": True, "slot": view.slot, "path": self.view_path(view), "tree": view.shown}
        if op in ("bound", "wait"):
            view = self.views.get(req.get("slot"))
            if view is None:
                raise Refused(f"no view {req.get('slot')}")
            if op == "bound":
                with self.turns:
                    self.bound(view, req["target"])
                return {"ok": True}
            ev = asyncio.Event()
            view.waiters.append(ev)
            await ev.wait()
            return {"ok": True, "code": view.code}
        if op == "release":
            with self.turns:
                view = self.release(req.get("target"))
            if view is None:
                raise Refused("not a view of this daemon")
            if view.code is None:
                ev = asyncio.Event()
                view.waiters.append(ev)
                await ev.wait()
            return {"ok": True, "code": view.code, "exiting": not self.views}
        raise Refused(f"unknown request {op!r}", EXIT_USAGE)


def control_listener(path):
    """The listening socket, made before the daemon forks (so a client never finds the
    device unlocked and the socket missing)."""
    import socket

    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    try:
        os.unlink(path)                    # a dead daemon's (the device lock is ours now)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(64)
    return sock


def forget_socket(path, sock):
    """Before the device is released: no later daemon's socket can be there yet."""
    try:
        os.unlink(path)
    except OSError:
        pass
    sock.close()
