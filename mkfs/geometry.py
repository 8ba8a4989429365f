"""Lay out a new file system: geometry from the device size, superblocks, first checkpoint."""
import time
import uuid as uuidlib

from ..errors import DeviceError, UsageError
from ..format import constants as C
from ..format.superblock import HASH_ALGO_BLAKE3, encode_superblock


def compute_geometry(device_bytes, block_size=C.DEFAULT_BLOCK_SIZE, segment_blocks=C.DEFAULT_SEGMENT_BLOCKS):
    if block_size & (block_size - 1) or not C.MIN_BLOCK_SIZE <= block_size <= C.MAX_BLOCK_SIZE:
        raise UsageError(f"block size must be a power of two from {C.MIN_BLOCK_SIZE} to {C.MAX_BLOCK_SIZE}")
    if not C.MIN_SEGMENT_BLOCKS <= segment_blocks <= C.MAX_SEGMENT_BLOCKS:
        raise UsageError(f"segment size must be {C.MIN_SEGMENT_BLOCKS} to {C.MAX_SEGMENT_BLOCKS} blocks")
    device_blocks = device_bytes // block_size
    segments = (device_blocks - 1 - C.FIRST_SEGMENT_BLOCK) // segment_blocks
    if segments < C.MIN_SEGMENTS:
        need = (C.FIRST_SEGMENT_BLOCK + 1 + C.MIN_SEGMENTS * segment_blocks) * block_size
        raise DeviceError(f"device too small: {device_bytes} bytes, need at least {need}")
    return dict(block_size=block_size, segment_blocks=segment_blocks, device_blocks=device_blocks,
                first_segment_block=C.FIRST_SEGMENT_BLOCK, segment_count=segments,
                checkpoint_slot_a=C.CHECKPOINT_SLOTS[0], checkpoint_slot_b=C.CHECKPOINT_SLOTS[1],
                mirror_block=device_blocks - 1)


def superblock_fields(geometry, *, uuid=None, label=""):
    label_bytes = label.encode()
    if len(label_bytes) > C.LABEL_MAX:
        raise UsageError(f"label longer than {C.LABEL_MAX} bytes")
    return dict(geometry, version=C.FORMAT_VERSION, compat=C.ALL_COMPAT, ro_compat=C.ALL_RO_COMPAT,
                incompat=C.ALL_INCOMPAT, uuid=(uuid or uuidlib.uuid4()).bytes,
                label=label_bytes.ljust(C.LABEL_MAX, b"\0"), reserved0=0,
                created_ns=time.time_ns(), hash_algo=HASH_ALGO_BLAKE3)


def empty_checkpoint():
    null = dict(paddr=0, hash=bytes(32))
    roots = dict(seq=0, snap_root=null, ca_root=null, usage_root=null, remap_root=null, calog_root=null,
                 calog_entries=0)
    return dict(seq=0, time_ns=0, roots=roots, log_segment=0, log_offset=0, next_unit_seq=1,
                live_blocks=0, data_blocks=0, node_blocks=0, free_segments=0, snapshots=0,
                backups=[roots] * C.CHECKPOINT_BACKUPS)


def make_filesystem(dev, *, block_size=C.DEFAULT_BLOCK_SIZE, segment_blocks=C.DEFAULT_SEGMENT_BLOCKS,
                    uuid=None, label=""):
    """Write superblock, mirror and the first checkpoint (with an empty default tree)."""
    from ..engine import Engine
    from ..filesystem import init_tree

    geometry = compute_geometry(dev.size, block_size, segment_blocks)
    sb = superblock_fields(geometry, uuid=uuid, label=label)
    dev.block_size = block_size
    raw = encode_superblock(sb).ljust(block_size, b"\0")
    zero = bytes(block_size)
    dev.write(0, [raw, zero, zero, zero])
    dev.write(geometry["mirror_block"], [raw])
    engine = Engine(dev, sb, empty_checkpoint())
    engine.log.state[0] = C.SEG_OPEN
    engine.log.alloc_seq[0] = 1
    engine.log.dirty.add(0)
    engine.create_tree(C.DEFAULT_TREE_NAME)
    init_tree(engine.tree(C.DEFAULT_TREE_NAME))
    engine.commit()
    return engine
