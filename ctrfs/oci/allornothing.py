"""An import onto a device as one transaction: the work runs on an engine open read-write
and is committed once at the end; when it fails, nothing is committed, and if a commit
was made on the way (the device ran short and had to clean, or a pull keeps each verified
layer) the names it should not have left are deleted again."""
from ..tool import open_engine_rw


def import_on(device, work, doomed, progress=None):
    """work(engine) -> its result, committed.  doomed(name, names before) -> whether a name
    a failed run left behind is deleted."""
    engine = open_engine_rw(device)
    before = {n for n, _e in engine.snapshots()}
    start = engine.seq
    try:
        out = work(engine)
        engine.commit()
    except BaseException:
        committed = engine.seq != start
        engine.close()
        if committed:
            undo(device, lambda n: doomed(n, before))
        raise
    finally:
        if progress:
            progress.close()
    engine.close()
    return out


def undo(device, doomed):
    engine = open_engine_rw(device)
    try:
        extra = [n for n, _e in engine.snapshots() if doomed(n)]
        for n in extra:
            engine.delete(n)
        if extra:
            engine.commit()
    finally:
        engine.close()
