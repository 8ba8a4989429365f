"""The power-loss simulator itself: what it records and the images it builds."""
from ctrfs.device import MemoryDevice
from ctrfs.testing.faultdev import HEAD, TAIL, CrashState, RecordingDevice

BS = 4096


def blk(tag):
    return bytes([tag]) * (BS // 2) + bytes([tag + 100]) * (BS // 2)


def recorded():
    """Epoch 0: blocks 1, 2 (one call) and 3; flush; epoch 1: 1 again and 4; flush; 5."""
    rec = RecordingDevice(MemoryDevice(bytearray(8 * BS)))
    rec.write(1, [blk(1), blk(2)])
    rec.write(3, [blk(3)])
    rec.flush()
    rec.write(1, [blk(4)])
    rec.write(4, [blk(5)])
    rec.flush()
    rec.write(5, [blk(6)])
    return rec


def block(img, n):
    return bytes(img[n * BS:(n + 1) * BS])


def test_records_single_blocks_and_epochs():
    rec = recorded()
    w = rec.writes
    assert [(x.blockno, x.epoch, x.call) for x in w] == [(1, 0, 0), (2, 0, 0), (3, 0, 1), (1, 1, 2), (4, 1, 3), (5, 2, 4)]
    assert rec.flushes == 2
    space = rec.crash_space()
    assert bytes(rec.inner.data) == bytes(space.image(space.prefix(len(w))))


def test_prefixes_and_tears():
    space = recorded().crash_space()
    assert not any(space.image(space.prefix(0)))
    img = space.image(space.prefix(4))          # epoch 0 durable, then the rewrite of block 1
    assert block(img, 1) == blk(4) and block(img, 2) == blk(2) and not any(block(img, 4))
    head = space.image(space.torn_prefix(3, HEAD))
    assert block(head, 1) == blk(4)[:BS // 2] + blk(1)[BS // 2:]
    tail = space.image(space.torn_prefix(3, TAIL))
    assert block(tail, 1) == blk(1)[:BS // 2] + blk(4)[BS // 2:]
    states = list(space.enumerate())
    assert len(states) == 3 * 6 + 1 and len(set(states)) == len(states)


def test_subsets_of_an_unflushed_epoch():
    space = recorded().crash_space()
    subsets = list(space.subsets(1))
    assert sorted(s.applied for s in subsets) == [(), (3,), (3, 4), (4,)]
    only_second = space.image(CrashState(1, (4,)))
    assert block(only_second, 1) == blk(1)        # the rewrite of block 1 was lost
    assert block(only_second, 4) == blk(5)        # the later write of the epoch landed
    assert space.contains(CrashState(1, (4,)), 2) and not space.contains(CrashState(1, (4,)), 3)
    assert not space.contains(CrashState(1, (3,), (3, HEAD)), 3)


def test_samples_are_reproducible_and_applied_restores_the_buffer():
    space = recorded().crash_space()
    a = list(space.sample(50, seed=3))
    assert a == list(space.sample(50, seed=3))
    for st in sorted(a, key=lambda s: s.epoch):
        with space.applied(st) as dev:
            assert dev.read(0, 8) == bytes(space.image(st))
            assert dev.readonly
    with space.applied(CrashState(2)) as dev:
        assert dev.read(0, 8) == bytes(space.image(CrashState(2)))
