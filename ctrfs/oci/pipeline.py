"""Run an event generator (reading, decompressing, hashing and parsing a layer) in a
thread beside the consumer (storing blocks and tree items): zlib, zstd, sha256 and blake3
release the GIL, so the two use both cores.  Exceptions of the producer reach the
consumer; a consumer that stops early stops the producer."""
import contextlib
import queue
import threading

from ..format import constants as C
from ..format.checksum import data_hash

DEPTH = 64                 # events in flight (file data pieces are up to 1 MiB each)
_END = object()


def with_block_hashes(events, block_size):
    """File data pieces (offset, bytes) that start on a block boundary and hold whole
    blocks, or end the file, become (offset, bytes, hashes): the data_hash of each block,
    the last one zero-padded as it is stored (FileSystem.write_hashed).  Files small
    enough to be stored inline are left alone."""
    size = 0
    for ev in events:
        if type(ev) is not tuple:
            size = ev.size
            yield ev
            continue
        offset, piece = ev
        n = len(piece)
        tail = n % block_size
        if size <= C.INLINE_MAX or offset % block_size or (tail and offset + n != size):
            yield ev
            continue
        mv = memoryview(piece)
        hashes = [data_hash(mv[i:i + block_size]) for i in range(0, n - tail, block_size)]
        if tail:
            hashes.append(data_hash(bytes(mv[n - tail:]) + bytes(block_size - tail)))
        yield offset, piece, hashes


def threaded(events, depth=DEPTH, idle=None):
    """idle: a context manager held around each wait for the producer (a daemon's
    requests run meanwhile)."""
    idle = idle or contextlib.nullcontext
    q = queue.Queue(depth)
    stop = threading.Event()
    failure = []

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for ev in events:
                if not put(ev):
                    return
        except BaseException as exc:   # handed to the consumer, raised there
            failure.append(exc)
        put(_END)

    t = threading.Thread(target=produce, name="ctrfs-layer-reader", daemon=True)
    t.start()
    try:
        while True:
            try:
                ev = q.get_nowait()
            except queue.Empty:
                with idle():
                    ev = q.get()
            if ev is _END:
                break
            yield ev
        if failure:
            raise failure[0]
    finally:
        stop.set()
        t.join(timeout=10)       # a producer blocked on its input is a daemon: let it be
