"""Run an event generator (reading, decompressing, hashing and parsing a layer) in a
thread beside the consumer (hashing and storing blocks): zlib, zstd and sha256 release
the GIL, so the two use both cores.  Exceptions of the producer reach the consumer;
a consumer that stops early stops the producer."""
import queue
import threading

DEPTH = 64                 # events in flight (file data pieces are up to 1 MiB each)
_END = object()


def threaded(events, depth=DEPTH):
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
            ev = q.get()
            if ev is _END:
                break
            yield ev
        if failure:
            raise failure[0]
    finally:
        stop.set()
        t.join(timeout=10)       # a producer blocked on its input is a daemon: let it be
