"""Turns on the daemon's engine.  FUSE requests and control requests run on the event
thread; a tool (`ctrfs import`, `gc`, ...) runs on a worker thread so that the session
keeps answering.  The engine is not thread-safe, so each side holds the turn while it
touches the engine, and the tool gives it up at every pause (ctrfs.oci.apply calls one
per tar member): a waiting request runs first, so readers wait at most one member's work
(or a commit) for an import, and not at all while it waits for its reader thread."""
import contextlib
import threading
import time


class Turns:
    def __init__(self):
        self._lock = threading.RLock()     # the loop thread may nest (a release ending a view)
        self._waiting = 0
        self._count = threading.Lock()

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            with self._count:
                self._waiting += 1
            self._lock.acquire()
            with self._count:
                self._waiting -= 1
        return self

    def __exit__(self, *exc):
        self._lock.release()

    def pause(self):
        """Called by the tool thread, which holds the turn: let waiting requests go first."""
        if self._waiting:
            self._lock.release()
            while self._waiting:
                time.sleep(0.0001)
            self._lock.acquire()

    @contextlib.contextmanager
    def outside(self):
        """For the tool thread, which holds the turn, around a wait that needs no engine
        (an import waiting on its reader thread): requests run meanwhile."""
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
