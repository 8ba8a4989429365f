"""Crash consistency: for every crash state of a set of workloads, the device opens, reads
back exactly the last checkpoint whose write reached the medium (so the last completed
commit, or the one before when the crash hit that commit's writes), loses nothing of a
completed commit, and checks clean.

Each workload runs once on a RecordingDevice; its crash states are then checked from the
recorded writes (faultdev.CrashSpace): every prefix, every prefix with the next write torn
both ways, every subset of small unflushed epochs, then random subsets (with tears) of the
big ones.  CTRFS_CRASH_STATES (default 10000) is the total over the workloads; e.g.
CTRFS_CRASH_STATES=1000000 for a deep run.  CTRFS_CRASH_SEED varies the random part."""
import functools
import os
import random
import time
import traceback
import uuid
import zlib
from itertools import chain, islice

import pytest

from ctrfs import cleaner
from ctrfs import engine as engine_mod
from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.format import constants as C
from ctrfs.format.checkpoint import decode_checkpoint
from ctrfs.mkfs.geometry import make_filesystem
from ctrfs.testing.faultdev import HEAD, TAIL, RecordingDevice

from crashmodel import Driver, MDir, MFile, data_problems, extract, structural_problems

TOTAL_STATES = int(os.environ.get("CTRFS_CRASH_STATES", "10000"))
SEED = int(os.environ.get("CTRFS_CRASH_SEED", "0"))
RECOVER_EVERY = 40          # 1 in N crash states is also recovered, written to and committed
T = C.DEFAULT_TREE_NAME


def check(engine):
    """The checker: fsck's check_engine (which does not read data blocks) plus a hash
    check of every data block the CA index holds, so a live block overwritten by a later
    write is caught in every state.  Before fsck existed: our own structural walk."""
    try:
        from ctrfs.fsck.checks import check_engine
    except ImportError:
        return structural_problems(engine)
    return [f"fsck {p[0]}: {p[1]}" for p in check_engine(engine)] + data_problems(engine)


def rnd(rng, n):
    return rng.randbytes(n)


# ---- workloads ------------------------------------------------------------------------------------
def wl_namespace(d, rng):
    """Directories, small (inline) and block files, symlinks, hardlinks, xattrs, renames,
    deletes; enough entries in one directory to split and merge leaves."""
    d.mkdir(T, b"/etc")
    d.create(T, b"/etc/hosts", b"127.0.0.1 localhost\n")
    d.commit()
    d.mkdir(T, b"/usr")
    d.mkdir(T, b"/usr/bin")
    d.create(T, b"/usr/bin/sh", rnd(rng, 20000), mode=0o755)
    d.symlink(T, b"/bin", b"usr/bin")
    d.commit()
    d.link(T, b"/usr/bin/sh", b"/usr/bin/bash")
    d.setxattr(T, b"/usr/bin/sh", b"user.cap", rnd(rng, 40))
    d.setxattr(T, b"/etc", b"user.note", b"config")
    d.commit()
    d.rename(T, b"/etc/hosts", b"/etc/hosts.old")
    d.create(T, b"/etc/hosts", b"10.0.0.1 gw\n" * 50)
    d.chmod(T, b"/etc/hosts", 0o600)
    d.unlink(T, b"/usr/bin/sh")
    d.commit()
    d.mkdir(T, b"/var")
    for i in range(80):
        d.create(T, b"/var/f%03d" % i, rnd(rng, rng.choice((0, 30, 700, 1500, 5000))))
    d.commit()
    for i in range(0, 80, 2):
        d.unlink(T, b"/var/f%03d" % i)
    d.rename(T, b"/usr/bin", b"/var/bin")
    d.removexattr(T, b"/etc", b"user.note")
    d.commit()
    for i in range(1, 80, 2):
        d.unlink(T, b"/var/f%03d" % i)
    d.unlink(T, b"/var/bin/bash")
    d.rmdir(T, b"/var/bin")
    d.commit()


def wl_overwrite(d, rng):
    """Multi-block files: overwrite in place, truncate down and up (holes), append, delete."""
    d.create(T, b"/big", rnd(rng, 40 * 4096 + 123))
    d.create(T, b"/med", rnd(rng, 9000))
    d.commit()
    d.write(T, b"/big", 5 * 4096 + 100, rnd(rng, 3 * 4096))
    d.write(T, b"/med", 0, b"\0" * 4096)          # a block of zeros becomes a hole
    d.commit()
    d.truncate(T, b"/big", 10000)
    d.commit()
    d.truncate(T, b"/big", 30 * 4096)
    d.write(T, b"/big", 29 * 4096 + 10, b"tail")
    d.commit()
    d.create(T, b"/copy", b"")
    d.write(T, b"/copy", 0, rnd(rng, 8192))
    d.unlink(T, b"/med")
    d.commit()
    for i in range(4):
        d.write(T, b"/big", rng.randrange(30 * 4096), rnd(rng, rng.randrange(1, 9000)))
        d.commit()
    d.truncate(T, b"/copy", 0)
    d.unlink(T, b"/big")
    d.commit()


def wl_snapshots(d, rng):
    """Images committed from a tree, a writable clone changed apart from its origin, shared
    content, and deletion of images and trees (their blocks freed, the rest untouched)."""
    d.mkdir(T, b"/app")
    for i in range(6):
        d.create(T, b"/app/lib%d" % i, rnd(rng, 4096 * (i + 1)))
    d.commit(image=b"v1")
    d.write(T, b"/app/lib0", 0, rnd(rng, 4096))
    d.create(T, b"/app/new", rnd(rng, 5000))
    d.commit(image=b"v2")
    d.clone(b"v1", b"work")
    d.commit()
    d.write(b"work", b"/app/lib3", 4096, rnd(rng, 100))
    d.create(b"work", b"/app/own", rnd(rng, 3 * 4096))
    d.unlink(b"work", b"/app/lib5")
    d.commit()
    d.delete(b"v1")
    d.commit()
    d.unlink(T, b"/app/lib1")
    d.commit(image=b"v3")
    d.delete(b"work")
    d.delete(b"v2")
    d.commit()
    d.commit()
    d.delete(b"v3")
    d.commit()


def wl_churn(d, rng):
    """Scattered one-block rewrites on a device filled (unrecorded) until it is nearly out
    of free segments: the recorded commits run the cleaner, which moves live blocks out
    of sparse segments, and reuse the segments it frees."""
    names = [b"/c%d" % i for i in range(10)]

    def rewrite():
        for _ in range(6):
            d.write(T, rng.choice(names), rng.randrange(32) * 4096, rnd(rng, 4096))
        d.commit()
    for n in names:
        d.create(T, n, rnd(rng, 32 * 4096))
    d.commit()
    while d.engine.log.free_count() > d.engine.clean_below:
        rewrite()
    d.mark()
    for _ in range(20):
        rewrite()


def wl_random(d, rng, steps=90, snapshots=False):
    """A seeded mix of every operation on every writable tree; with snapshots, images,
    clones and deletions too (CTRFS_CRASH_SEED gives other mixes)."""
    for step in range(steps):
        writable = sorted(n for n, k in d.kinds.items() if k == C.SNAP_WRITABLE)
        t = rng.choice(writable)
        m = d.models[t]
        files = sorted(p for p, o in m.items() if isinstance(o, MFile))
        dirs = sorted(p for p, o in m.items() if isinstance(o, MDir))
        leaves = sorted(p for p, o in m.items() if not isinstance(o, MDir))
        new = rng.choice(dirs).rstrip(b"/") + b"/n%d" % step
        op = rng.random()
        if op < 0.16 or not files:
            d.create(t, new, rnd(rng, rng.choice((0, 100, 1100, 3000, 9000, 20000))))
        elif op < 0.30:
            path = rng.choice(files)
            size = len(m[path].data)
            d.write(t, path, rng.randrange(size + 4097), rnd(rng, rng.randrange(1, 10000)))
        elif op < 0.35:
            d.truncate(t, rng.choice(files), rng.randrange(20000))
        elif op < 0.41:
            d.unlink(t, rng.choice(leaves))
        elif op < 0.46:
            d.mkdir(t, new)
        elif op < 0.48:
            empty = [p for p in dirs if p != b"/" and not any(q.startswith(p + b"/") for q in m)]
            if empty:
                d.rmdir(t, rng.choice(empty))
        elif op < 0.52:
            d.link(t, rng.choice(files), new)
        elif op < 0.55:
            d.symlink(t, new, rnd(rng, rng.randrange(1, 60)).hex().encode())
        elif op < 0.61:
            src = rng.choice(sorted(p for p in m if p != b"/"))
            parents = [p for p in dirs if p != src and not p.startswith(src + b"/")]
            d.rename(t, src, rng.choice(parents).rstrip(b"/") + b"/m%d" % step)
        elif op < 0.66:
            path = rng.choice(files + dirs)
            names = sorted(m[path].xattrs)
            if names and rng.random() < 0.3:
                d.removexattr(t, path, rng.choice(names))
            else:
                d.setxattr(t, path, b"user.k%d" % rng.randrange(4), rnd(rng, rng.randrange(200)))
        elif op < 0.68:
            d.chmod(t, rng.choice(files + dirs), rng.choice((0o600, 0o755, 0o4711)))
        elif op < 0.70:
            d.orphan(t, rng.choice(files))
        elif op < 0.72:
            d.release_orphans()
        elif snapshots and op < 0.76:
            d.commit(image=b"img%d" % step, tree=t)
        elif snapshots and op < 0.80:
            d.commit()
            d.clone(rng.choice(sorted(d.kinds)), b"tree%d" % step)
        elif snapshots and op < 0.83 and len(d.kinds) > 1:
            d.delete(rng.choice(sorted(n for n in d.kinds if n != T)))
        else:
            d.commit()
    d.release_orphans()
    d.commit()


WORKLOADS = {
    "namespace": (wl_namespace, 4 << 20),
    "overwrite": (wl_overwrite, 4 << 20),
    "snapshots": (wl_snapshots, 4 << 20),
    "churn": (wl_churn, 8 << 20),
    "random": (wl_random, 4 << 20),
    "random-snapshots": (functools.partial(wl_random, snapshots=True), 4 << 20),
}


# ---- recording ------------------------------------------------------------------------------------------
class FakeClock:
    """time.time_ns for the recorded runs: timestamps go into inodes, snapshot entries
    and checkpoints, so with the wall clock every run lays out its blocks differently and
    a failing crash state could not be replayed.  With this one, a seed replays exactly."""

    def __init__(self):
        self.now = 1_700_000_000 * 10 ** 9

    def __call__(self):
        self.now += 1000
        return self.now


@functools.lru_cache(maxsize=None)
def base_image(size):
    """A freshly made file system (seq 1); every workload starts from a copy."""
    dev = MemoryDevice(bytearray(size))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "time_ns", FakeClock())
        make_filesystem(dev, segment_blocks=16, uuid=uuid.UUID(int=0xC7F5)).log.close()
    return bytes(dev.data)


class Recorded:
    """One workload run on a RecordingDevice: its crash space and, per checkpoint seq, the
    state that checkpoint must read back as."""

    def __init__(self, name):
        fn, size = WORKLOADS[name]
        self.name = name
        rec = RecordingDevice(MemoryDevice(bytearray(base_image(size))))
        engine = Engine.open(rec)
        self.base_seq = engine.seq
        driver = Driver(engine)

        def mark():          # the workload's set-up is done: record from here on
            rec.restart()
            self.base_seq = engine.seq
            self.victims.clear()
        driver.on_mark = mark
        self.victims = []                    # segments the cleaner emptied, per run

        def counting_clean(eng, *a, **kw):
            victims = cleaner.clean(eng, *a, **kw)
            self.victims += victims
            return victims
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(engine_mod, "clean", counting_clean)
            mp.setattr(time, "time_ns", FakeClock())
            fn(driver, random.Random(zlib.crc32(name.encode()) + SEED))
        engine.log.close()
        self.commits = driver.commits
        self.space = rec.crash_space()
        self.final = bytes(rec.inner.data)
        self.checkpoint_writes = []          # (write index, seq)
        for w in self.space.writes:
            if w.blockno in C.CHECKPOINT_SLOTS:
                self.checkpoint_writes.append((w.index, decode_checkpoint(w.data)["seq"]))

    def expected_seq(self, state):
        seq = self.base_seq
        for index, s in self.checkpoint_writes:
            if self.space.contains(state, index):
                seq = max(seq, s)
        return seq


@functools.lru_cache(maxsize=None)
def recorded(name):
    return Recorded(name)


def budget(name):
    return TOTAL_STATES // len(WORKLOADS) + (1 if list(WORKLOADS).index(name) < TOTAL_STATES % len(WORKLOADS) else 0)


def crash_states(rec, n):
    """n distinct crash states: first around every checkpoint write (just before, torn
    both ways, just after), then every other prefix and torn prefix (a seeded, evenly
    spread choice of them when they are more than n), every subset of the small epochs,
    then seeded random subsets of the big ones.  Yielded in epoch order, in batches, so
    the shared image only moves forward."""
    space = rec.space
    rng = random.Random(zlib.crc32(rec.name.encode()) + SEED)
    first = []
    for index, _seq in rec.checkpoint_writes:
        first += [space.prefix(index), space.torn_prefix(index, HEAD), space.torn_prefix(index, TAIL),
                  space.prefix(index + 1)]
    rest = list(space.enumerate())
    if len(first) + len(rest) > n:
        rest = rng.sample(rest, max(0, n - len(first)))
    small = [s for ep, idx in sorted(space.epochs.items()) if len(idx) <= 8
             for s in space.subsets(ep, torn=True)]

    def randoms():
        gen = space.sample(None, seed=rng.randrange(1 << 32))
        while True:
            yield from sorted(islice(gen, 4096), key=lambda s: s.epoch)

    by_epoch = lambda s: s.epoch  # noqa: E731
    seen, misses = set(), 0
    for st in chain(sorted(first + rest, key=by_epoch), sorted(small, key=by_epoch), randoms()):
        key = hash((st.epoch, st.applied, st.torn))
        if key in seen:
            misses += 1
            if misses > 50 * n:
                return           # the space is smaller than asked for
            continue
        seen.add(key)
        yield st
        if len(seen) >= n:
            return


# ---- checking one state -------------------------------------------------------------------------------
def verify_state(rec, engine, want_seq, trees_checked):
    """Problems of an opened crash state (empty list = as expected)."""
    if engine.seq != want_seq:
        return [f"opened checkpoint {engine.seq}, expected {want_seq}"]
    want = rec.commits[want_seq]
    snaps = {bytes(n): (e["kind"], e["root"][1]) for n, e in engine.snapshots()}
    if snaps != want["snaps"]:
        return [f"snapshot table {sorted(snaps)} differs from commit {want_seq}'s {sorted(want['snaps'])}"]
    problems = check(engine)
    for name, (_kind, root) in snaps.items():
        # check() verified every node and block by hash, so one root hash reads back one
        # way: each distinct tree is compared with the model once per workload.
        if root not in trees_checked:
            got = extract(engine, name)
            if got != want["trees"][name]:
                problems.append(f"tree {name!r} differs from the model of commit {want_seq}: "
                                + describe_diff(got, want["trees"][name]))
            else:
                trees_checked.add(root)
    return problems


def describe_diff(got, want):
    g, w = got[0], want[0]
    keys = sorted(set(g) | set(w))
    diffs = [f"{k!r}: {g.get(k)} != {w.get(k)}" for k in keys if g.get(k) != w.get(k)]
    if got[1] != want[1]:
        diffs.append(f"hardlink groups {sorted(map(sorted, got[1]))} != {sorted(map(sorted, want[1]))}")
    return "; ".join(diffs[:5])


def check_state(rec, state, trees_checked):
    try:
        with rec.space.applied(state) as dev:
            engine = Engine.open(dev)
            return verify_state(rec, engine, rec.expected_seq(state), trees_checked)
    except Exception:
        return ["open/read failed:\n" + traceback.format_exc(limit=6)]


def recover_and_continue(rec, state):
    """Open a crash state read-write, keep working (so freshly reused space is written
    over whatever the crash left), commit, reopen: the old content must still be there."""
    want_seq = rec.expected_seq(state)
    want = rec.commits[want_seq]
    dev = MemoryDevice(rec.space.image(state))
    engine = Engine.open(dev)
    d = Driver(engine)
    if T in d.models:
        d.create(T, b"/after-crash", bytes(range(256)) * 80)
        d.commit()
        d.unlink(T, b"/after-crash")
        d.commit()
    d.commit()
    engine.log.close()
    reopened = Engine.open(MemoryDevice(dev.data, readonly=True))
    problems = check(reopened)
    for name in want["trees"]:
        if extract(reopened, name) != want["trees"][name]:
            problems.append(f"tree {name!r} changed across recovery")
    return problems


# ---- the tests ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_matches_model(name):
    """The workload itself: every commit, reopened from the final image's history, reads
    back as the model and checks clean (fsck, and crashmodel's own structural walk)."""
    rec = recorded(name)
    assert len(rec.commits) > 3
    if name == "churn":
        assert len(rec.victims) >= 8, "the cleaner should have run during the recorded commits"
    final = Engine.open(MemoryDevice(rec.final, readonly=True))
    assert final.seq == max(rec.commits)
    assert verify_state(rec, final, final.seq, set()) == []
    for index, seq in rec.checkpoint_writes:
        st = rec.space.prefix(index + 1)
        assert check_state(rec, st, set()) == [], f"commit {seq}"
        with rec.space.applied(st) as dev:      # a second, independent walk of each commit
            assert structural_problems(Engine.open(dev)) == [], f"commit {seq}"


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_crash_states(name, crash_counter):
    rec = recorded(name)
    failures, n, trees_checked = [], 0, set()
    rng = random.Random(SEED)
    recovered = 0
    for state in crash_states(rec, budget(name)):
        n += 1
        problems = check_state(rec, state, trees_checked)
        if not problems and rng.randrange(RECOVER_EVERY) == 0:
            recovered += 1
            problems = [f"after recovery: {p}" for p in recover_and_continue(rec, state)]
        if problems:
            failures.append(f"{state.describe()} (expect seq {rec.expected_seq(state)}):\n  "
                            + "\n  ".join(problems[:8]))
            if len(failures) >= 5:
                break
    crash_counter.add(name, n)
    assert not failures, (f"{name}: {len(failures)} bad crash states of {n} (replay: CTRFS_CRASH_SEED={SEED} "
                          f"CTRFS_CRASH_STATES={TOTAL_STATES}):\n" + "\n".join(failures))
    assert n == budget(name)
