"""A power-loss simulator: a device that records every block write and every flush, and
builds the device image of any state a crash could leave behind.

The model (LittleFS/ALICE style): a flush is a barrier, so every write issued before a
completed flush is durable.  The writes issued since the last completed flush (one
"epoch") may have reached the medium in any order, so any subset of them may be there;
and the one being written when the power went may be torn (half new, half old).

    rec = RecordingDevice(MemoryDevice(image))
    ... run a workload on rec ...
    space = rec.crash_space()
    for state in space.enumerate():            # every prefix, every torn prefix
        img = space.image(state)               # a fresh bytearray
    for state in space.sample(1000, seed=1):   # random subsets (+ tears) of an epoch
        with space.applied(state) as dev:      # cheap: patches one shared buffer in place
            Engine.open(dev) ...
"""
import random
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..device import MemoryDevice

HEAD = "head"   # torn write: first half new, second half old
TAIL = "tail"   # torn write: first half old, second half new


@dataclass(frozen=True)
class Write:
    index: int          # position in the whole write sequence
    blockno: int
    data: bytes         # exactly one block
    epoch: int          # number of flushes completed before it was issued
    call: int           # the device.write call it came from (one call may write many blocks)


@dataclass(frozen=True)
class CrashState:
    """All writes of epochs before `epoch` are on the medium; of epoch `epoch`, those in
    `applied` (indices, issue order); `torn` = (write index, HEAD|TAIL) is half there."""
    epoch: int
    applied: tuple = ()
    torn: tuple = None
    label: str = field(default="", compare=False)

    def describe(self):
        t = f" torn={self.torn[0]}:{self.torn[1]}" if self.torn else ""
        return f"{self.label or 'state'} epoch={self.epoch} applied={list(self.applied)}{t}"


class RecordingDevice:
    """Wraps a MemoryDevice; same interface.  Records writes (split into single blocks)
    and flushes.  `base` is the image when recording began (or was last restarted)."""

    is_blockdev = False

    def __init__(self, inner):
        self.inner = inner
        self.restart()

    def restart(self):
        """Forget what was recorded: the current image becomes the base."""
        self.base = bytes(self.inner.data)
        self.writes = []
        self.flushes = 0
        self.calls = 0

    # ---- the device interface ------------------------------------------------------
    @property
    def block_size(self):
        return self.inner.block_size

    @block_size.setter
    def block_size(self, value):
        self.inner.block_size = value

    @property
    def size(self):
        return self.inner.size

    @property
    def blocks(self):
        return self.inner.blocks

    @property
    def readonly(self):
        return self.inner.readonly

    @property
    def path(self):
        return self.inner.path

    @property
    def data(self):
        return self.inner.data

    def read(self, blockno, count=1):
        return self.inner.read(blockno, count)

    def read_into(self, blockno, buf):
        self.inner.read_into(blockno, buf)

    def read_at(self, offset, length):
        return self.inner.read_at(offset, length)

    def write(self, blockno, buffers):
        self.inner.write(blockno, buffers)
        bs = self.block_size
        raw = b"".join(bytes(b) for b in buffers)
        if len(raw) % bs:
            raise ValueError(f"write of {len(raw)} bytes is not whole blocks")
        for i in range(len(raw) // bs):
            self.writes.append(Write(len(self.writes), blockno + i, raw[i * bs:(i + 1) * bs],
                                     self.flushes, self.calls))
        self.calls += 1

    def flush(self):
        self.inner.flush()
        self.flushes += 1

    def close(self):
        pass

    # ---- crash states --------------------------------------------------------------
    def crash_space(self):
        return CrashSpace(self.base, self.writes, self.block_size)


class CrashSpace:
    """The crash states of one recorded write sequence, and their device images."""

    def __init__(self, base, writes, block_size):
        self.base = base
        self.writes = list(writes)
        self.bs = block_size
        self.epochs = {}                 # epoch -> [write indices]
        for w in self.writes:
            self.epochs.setdefault(w.epoch, []).append(w.index)
        self.last_epoch = max(self.epochs, default=0)
        self._buf = None                 # shared working image for applied()
        self._buf_epoch = None

    # ---- which writes a state holds -------------------------------------------------
    def durable_before(self, epoch):
        """Index of the first write of `epoch` (everything before it is durable)."""
        idx = self.epochs.get(epoch)
        if idx:
            return idx[0]
        return sum(1 for w in self.writes if w.epoch < epoch)

    def contains(self, state, index):
        """Whether write `index` is fully on the medium in `state`."""
        w = self.writes[index]
        return w.epoch < state.epoch or (w.epoch == state.epoch and index in state.applied
                                         and (state.torn is None or state.torn[0] != index))

    def prefix(self, k, label="prefix"):
        """The state after the first k writes (a clean power cut after write k-1)."""
        if k >= len(self.writes):
            return CrashState(self.last_epoch + 1, (), None, label)
        ep = self.writes[k].epoch
        return CrashState(ep, tuple(range(self.durable_before(ep), k)), None, label)

    def torn_prefix(self, k, half):
        """The first k writes, and write k torn."""
        st = self.prefix(k)
        return CrashState(st.epoch, st.applied, (k, half), f"torn-{half}")

    # ---- enumeration -----------------------------------------------------------------
    def enumerate(self, *, torn=True):
        """Every prefix (0..n writes) and, with torn, every prefix with the next write torn
        both ways: 3n + 1 states, deterministic."""
        for k in range(len(self.writes) + 1):
            yield self.prefix(k)
            if torn and k < len(self.writes):
                yield self.torn_prefix(k, HEAD)
                yield self.torn_prefix(k, TAIL)

    def subsets(self, epoch, *, limit=None, rng=None, torn=False):
        """Subsets of the writes of one epoch: all 2^m of them when that is at most `limit`
        (default 2^20), else `limit` random ones.  With torn, each also tears one of the
        writes it leaves out."""
        idx = self.epochs.get(epoch, [])
        m = len(idx)
        rng = rng or random.Random(0)
        if m <= 20 and 2 ** m <= (limit or 2 ** 20):
            for mask in range(2 ** m):
                applied = tuple(i for b, i in enumerate(idx) if mask >> b & 1)
                yield self._with_tear(epoch, applied, idx, rng, torn, "subset")
            return
        for _ in range(limit or 2 ** 20):
            applied = tuple(i for i in idx if rng.random() < 0.5)
            yield self._with_tear(epoch, applied, idx, rng, torn, "subset")

    def _with_tear(self, epoch, applied, idx, rng, torn, label):
        missing = [i for i in idx if i not in applied]
        if torn and missing:
            return CrashState(epoch, applied, (rng.choice(missing), rng.choice((HEAD, TAIL))), label + "+torn")
        return CrashState(epoch, applied, None, label)

    def sample(self, n, *, seed=0, torn_rate=0.3):
        """n random states (None: endless): a random epoch, a random subset of its writes,
        sometimes a torn one among those left out (reproducible from the seed)."""
        rng = random.Random(seed)
        epochs = sorted(self.epochs)
        if not epochs:
            return
        weights = [len(self.epochs[e]) for e in epochs]   # big epochs hold most states
        for _ in (range(n) if n is not None else iter(int, 1)):
            ep = rng.choices(epochs, weights)[0]
            idx = self.epochs[ep]
            p = rng.random()                      # vary the density of applied writes
            applied = tuple(i for i in idx if rng.random() < p)
            yield self._with_tear(ep, applied, idx, rng, rng.random() < torn_rate, "random")

    # ---- images --------------------------------------------------------------------------
    def _patch(self, buf, w, half=None):
        off = w.blockno * self.bs
        if half is None:
            buf[off:off + self.bs] = w.data
        elif half == HEAD:
            buf[off:off + self.bs // 2] = w.data[:self.bs // 2]
        else:
            buf[off + self.bs // 2:off + self.bs] = w.data[self.bs // 2:]

    def _state_writes(self, state):
        for i in state.applied:
            yield self.writes[i], None
        if state.torn is not None:
            yield self.writes[state.torn[0]], state.torn[1]

    def image(self, state):
        """A fresh bytearray holding the device as `state` leaves it."""
        buf = bytearray(self.base)
        for w in self.writes[:self.durable_before(state.epoch)]:
            self._patch(buf, w)
        for w, half in self._state_writes(state):
            self._patch(buf, w, half)
        return buf

    def _epoch_buffer(self, epoch):
        """The shared buffer advanced (never rewound) to the start of `epoch`."""
        if self._buf is None or self._buf_epoch > epoch:
            self._buf, self._buf_epoch = bytearray(self.base), 0
        for w in self.writes[self.durable_before(self._buf_epoch):self.durable_before(epoch)]:
            self._patch(self._buf, w)
        self._buf_epoch = epoch
        return self._buf

    @contextmanager
    def applied(self, state):
        """A read-only MemoryDevice on a shared buffer patched to `state`, restored on exit.
        Cheap when states come in epoch order (enumerate/subsets/sorted samples).  To write
        to a recovered device (recovery then more work), use image()."""
        buf = self._epoch_buffer(state.epoch)
        saved = {}
        for w, half in self._state_writes(state):
            if w.blockno not in saved:
                off = w.blockno * self.bs
                saved[w.blockno] = bytes(buf[off:off + self.bs])
            self._patch(buf, w, half)
        dev = MemoryDevice(buf, block_size=self.bs, readonly=True)
        try:
            yield dev
        finally:
            for blockno, old in saved.items():
                buf[blockno * self.bs:(blockno + 1) * self.bs] = old
