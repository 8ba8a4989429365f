"""Progress of an import or export on a terminal: layers and bytes on one line of stderr,
redrawn at most ten times a second (a line of our own: no library needed for one counter)."""
import time

from ..tool import format_size


class ImportProgress:
    def __init__(self, stream, interval=0.1, unit="of file data"):
        self.stream = stream
        self.unit = unit
        self.interval = interval
        self.image = ""
        self.what = ""
        self.done = 0
        self.last = 0.0
        self.shown = False

    def start(self, image):
        self.image = image

    def layer(self, i, n, what):
        self.what = f"layer {i}/{n}"
        self._draw(force=True)

    def status(self, what):
        """What the counter is at, in words (a transfer's objects sent, fetched, skipped)."""
        self.what = what
        self._draw()

    def bytes(self, n):
        self.done += n
        self._draw()

    def _draw(self, force=False):
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        said = ", ".join(x for x in (self.what, f"{format_size(self.done)} {self.unit}") if x)
        self.stream.write(f"\r{self.image}: {said}\x1b[K")
        self.stream.flush()
        self.shown = True

    def close(self):
        if self.what or self.done:
            self._draw(force=True)          # the final counts, however soon they came
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()
