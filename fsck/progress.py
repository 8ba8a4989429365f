"""Progress for fsck.ctrfs, the two ways fsck(8) knows:
- a bar redrawn in place on a terminal (`-C` / `-C 0`, or stdout is a tty);
- e2fsck's machine-readable lines "pass current max device" written to a descriptor
  (`-C fd`, fd > 0), which fsck(8) reads to draw one bar for several checkers.
Drawn at most ten times a second, so a fast check pays nothing for it."""
import os
import time

PASSES = ("superblocks", "system trees", "FS trees", "summaries", "namespaces", "data")
WIDTH = 30


class Progress:
    def __init__(self, device, *, stream=None, fd=None, interval=0.1):
        self.device = device
        self.stream = stream          # a terminal: draw a bar
        self.fd = fd                  # a descriptor: e2fsck progress lines
        self.interval = interval
        self.name, self.total, self.done = "", None, 0
        self.npass = 0
        self.last = 0.0
        self.drawn = False

    def pass_(self, name, total=None):
        if self.name and self.total:
            self.done = self.total
            self._emit(force=True)     # the previous pass, finished
        self.name, self.total, self.done = name, total, 0
        self.npass = PASSES.index(name) + 1 if name in PASSES else self.npass + 1
        self._emit(force=True)

    def update(self, n=1):
        self.done += n
        self._emit()

    def _emit(self, force=False):
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        if self.fd is not None:
            try:
                os.write(self.fd, f"{self.npass} {self.done} {self.total or 0} {self.device}\n".encode())
            except OSError:
                self.fd = None        # the reader went away; checking goes on
        if self.stream is not None:
            if self.total:
                frac = min(1.0, self.done / self.total)
                bar = "#" * int(frac * WIDTH)
                text = f"{self.device}: {self.name:<12} |{bar:<{WIDTH}}| {frac * 100:5.1f}%"
            else:
                text = f"{self.device}: {self.name:<12} {self.done} done"
            self.stream.write("\r" + text[:79].ljust(79))
            self.stream.flush()
            self.drawn = True

    def close(self):
        if self.stream is not None and self.drawn:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()
            self.drawn = False
