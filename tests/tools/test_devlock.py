"""One writer per device on every path: the image file, a symlink, a loop device over the
file and a bind mount of the file are one device.  A process holding it read-write (here
an open Device, as mount.ctrfs holds it) keeps every other writer off, whichever path
either used; read-only tools still read the last checkpoint."""
import json
import os

import pytest
from toolrun import assert_error, assert_ok, ctrfs, mkfs, run

from ctrfs import devlock
from ctrfs.device import Device

KINDS = ("file", "symlink", "loop", "bind")
# (the path the holder opened, the path the other tools use)
PAIRS = [("loop", "file"), ("loop", "symlink"), ("loop", "bind"),
         ("file", "loop"), ("symlink", "loop"), ("bind", "loop")]


def identity_of(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return devlock.identity(fd)
    finally:
        os.close(fd)


def images(path):
    res = assert_ok(ctrfs("images", "--json", path))
    return {r["name"]: r["root"] for r in json.loads(res.out)}, res.err


def writers(path):
    """Every tool that opens a device read-write: (prog, exit code when busy, result)."""
    yield "ctrfs", 8, ctrfs("rm", path, "@default")
    yield "ctrfs", 8, ctrfs("clone", path, "@default", "copy")
    yield "fsck.ctrfs", 8, run("fsck.ctrfs", "-y", path)
    yield "fsck.ctrfs", 8, run("fsck.ctrfs", "-p", path)
    yield "mkfs.ctrfs", 8, mkfs("-q", "-f", path)


def test_identity_is_the_same_on_every_path(image, tmp_path, device_path, loopdev):
    names = {kind: device_path(image, kind) for kind in KINDS}
    ids = {kind: identity_of(p) for kind, p in names.items()}
    assert len(set(ids.values())) == 1, ids
    other = tmp_path / "other.img"
    other.write_bytes(bytes(1 << 20))
    assert identity_of(other) != ids["file"]
    assert identity_of(loopdev(other)) == identity_of(other)
    assert identity_of(loopdev(names["loop"])) == ids["file"]     # a loop over the loop


@pytest.mark.parametrize("held,used", PAIRS)
def test_writers_refused_while_a_writer_holds_the_device(image, device_path, held, used):
    holder_path, path = device_path(image, held), device_path(image, used)
    before, _ = images(image)
    holder = Device(holder_path)
    try:
        for prog, code, res in writers(path):
            assert_error(res, code, path, "in use", prog=prog)
        assert_error(run("fsck.ctrfs", "-n", path), 8, path, "in use", prog="fsck.ctrfs")
        rows, note = images(path)                  # read-only tools: the last checkpoint
        assert rows == before and "last checkpoint" in note
    finally:
        holder.close()
    assert images(image) == (before, "")           # nothing changed, and the lock is gone
    assert_ok(ctrfs("clone", path, "@default", "copy"))
    assert_ok(run("fsck.ctrfs", "-n", image))


def test_read_only_holder_keeps_writers_off(image, device_path):
    """A read-only open (mount -o ro) shares the lock with readers, not with writers."""
    loop = device_path(image, "loop")
    reader = Device(loop, readonly=True)
    try:
        assert_error(ctrfs("rm", image, "@default"), 8, "in use", prog="ctrfs")
        rows, note = images(image)
        assert "@default" in rows and note == ""
        assert_ok(run("fsck.ctrfs", "-n", image))
    finally:
        reader.close()
    assert_ok(ctrfs("clone", image, "@default", "copy"))
