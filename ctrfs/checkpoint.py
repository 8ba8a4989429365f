"""Checkpoint slots: which one is newest, and writing the next one."""
import time

from .errors import CorruptError
from .format import constants as C
from .format.checkpoint import decode_checkpoint, encode_checkpoint
from .format.pointer import NULL_POINTER


def read_slots(dev, sb):
    """[(slot index, checkpoint or CorruptError)] for both slots."""
    out = []
    for i, blockno in enumerate(C.CHECKPOINT_SLOTS):
        try:
            out.append((i, decode_checkpoint(dev.read(blockno))))
        except CorruptError as exc:
            out.append((i, exc))
    return out


def load_checkpoint(dev, sb, slot=None):
    """Valid checkpoints, newest first (or just the one in `slot`)."""
    found = [(cp["seq"], i, cp) for i, cp in read_slots(dev, sb) if not isinstance(cp, Exception)]
    if slot is not None:
        found = [f for f in found if f[1] == slot]
    found.sort(key=lambda f: f[0], reverse=True)
    if not found:
        raise CorruptError("no valid checkpoint in either slot")
    return [cp for _seq, _i, cp in found]


def _ptr(p):
    p = p or NULL_POINTER
    return dict(paddr=p[0], hash=p[1])


def root_set(engine, seq):
    return dict(seq=seq, snap_root=_ptr(engine.snaps.root), ca_root=_ptr(engine.ca_tree.root),
                usage_root=_ptr(engine.usage.root), remap_root=_ptr(engine.remap.root),
                calog_root=_ptr(engine.ca.head), calog_entries=engine.ca.entries)


def write_checkpoint(engine, seq):
    """Write checkpoint `seq` into slot seq % 2 (the older of the two)."""
    log = engine.log
    prev = engine.cp
    backups = ([prev["roots"]] + prev["backups"])[:C.CHECKPOINT_BACKUPS] if prev["seq"] else prev["backups"]
    counts = log.live
    cp = dict(
        seq=seq, time_ns=time.time_ns(), roots=root_set(engine, seq),
        log_segment=log.head_seg, log_offset=log.head_off, next_unit_seq=log.next_unit_seq,
        live_blocks=int(counts.sum()), data_blocks=0, node_blocks=0,
        free_segments=int((log.state == C.SEG_FREE).sum()),
        snapshots=sum(1 for _ in engine.snaps.scan()), backups=backups)
    engine.dev.write(C.CHECKPOINT_SLOTS[seq % 2], [encode_checkpoint(cp, engine.block_size)])
    return cp
