"""mkfs.ctrfs through its console script: what it creates, what it refuses, exit codes, and
one stderr line for every error."""
import fcntl
import subprocess
import uuid

import pytest
from toolrun import assert_error, assert_ok, ctrfs, file_bytes, mkfs

from ctrfs.device import Device
from ctrfs.engine import Engine, read_superblock
from ctrfs.format import constants as C

MiB = 1 << 20


def mkfs_error(res, code, *fragments):
    return assert_error(res, code, *fragments, prog="mkfs.ctrfs")


def superblock(path):
    dev = Device(str(path), readonly=True)
    try:
        return read_superblock(dev)
    finally:
        dev.close()


def assert_ctrfs(path, size=None):
    """The device opens at checkpoint 1 with the default writable tree."""
    dev = Device(str(path), readonly=True)
    try:
        engine = Engine.open(dev)
        assert engine.seq == 1
        assert [n for n, _e in engine.snapshots()] == [C.DEFAULT_TREE_NAME]
        if size is not None:
            assert engine.sb["device_blocks"] * engine.block_size == size
    finally:
        dev.close()


def sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def make_ext4(path, size=64 * MiB):
    sparse(path, size)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(path)], check=True)


# ---- creating ---------------------------------------------------------------------------
def test_new_loop_file_with_size(tmp_path):
    path = tmp_path / "new.img"
    res = assert_ok(mkfs("-s", "64M", path))
    assert path.stat().st_size == 64 * MiB
    assert_ctrfs(path, 64 * MiB)
    sb = superblock(path)
    for text in ("64.0 MiB", "block size    4096", "segment size  1.0 MiB (256 blocks)",
                 f"segments      {sb['segment_count']}", str(uuid.UUID(bytes=sb["uuid"]))):
        assert text in res.out, (text, res.out)
    assert res.err == ""


@pytest.mark.parametrize("size,nbytes", [("4096K", 4096 * 1024 * 4), ("512M", 512 * MiB)])
def test_size_suffixes(tmp_path, size, nbytes):
    path = tmp_path / "s.img"
    if size == "4096K":   # 4 MiB is too small at the default segment size: use small segments
        assert_ok(mkfs("-q", "-s", "16384K", "--segment-size", "64K", path))
    else:
        assert_ok(mkfs("-q", "-s", size, path))
    assert path.stat().st_size == nbytes
    assert_ctrfs(path, nbytes)


def test_existing_file_used_at_its_size(tmp_path):
    path = tmp_path / "old.img"
    sparse(path, 40 * MiB)
    assert_ok(mkfs("-q", path))
    assert path.stat().st_size == 40 * MiB
    assert_ctrfs(path, 40 * MiB)


def test_existing_file_grown_to_size(tmp_path):
    path = tmp_path / "grow.img"
    sparse(path, 16 * MiB)
    assert_ok(mkfs("-q", "-s", "48M", path))
    assert path.stat().st_size == 48 * MiB
    assert_ctrfs(path, 48 * MiB)


def test_file_is_never_shrunk(tmp_path):
    path = tmp_path / "big.img"
    sparse(path, 64 * MiB)
    before = file_bytes(path)
    mkfs_error(mkfs("-s", "32M", path), 16, "never shrunk")
    assert file_bytes(path) == before


def test_options_reach_the_superblock(tmp_path):
    path = tmp_path / "opts.img"
    u = "0b0e5b7e-8b8a-4d25-9f3c-5d1e5a3c2b10"
    label = "x" * C.LABEL_MAX
    assert_ok(mkfs("-q", "-s", "64M", "-b", "8192", "--segment-size", "512K", "-L", label, "-U", u, path))
    sb = superblock(path)
    assert sb["block_size"] == 8192 and sb["segment_blocks"] == 64
    assert sb["uuid"] == uuid.UUID(u).bytes
    assert sb["label"].rstrip(b"\0") == label.encode()
    assert_ctrfs(path, 64 * MiB)
    out = assert_ok(ctrfs("debug", "dump-super", path)).out
    assert u in out and repr(label) in out


def test_quiet_prints_nothing(tmp_path):
    res = assert_ok(mkfs("-q", "-s", "64M", tmp_path / "q.img"))
    assert res.out == "" and res.err == ""


# ---- refusing to overwrite ------------------------------------------------------------------
def test_refuses_ctrfs_without_force(image):
    before = file_bytes(image)
    mkfs_error(mkfs(image), 1, "ctrfs", "-f")
    assert file_bytes(image) == before
    old_uuid = superblock(image)["uuid"]
    assert_ok(mkfs("-q", "-f", image))
    assert superblock(image)["uuid"] != old_uuid
    assert_ctrfs(image)


def test_refuses_ctrfs_known_only_by_its_mirror(image):
    with open(image, "r+b") as f:
        f.write(b"\0" * 4096)       # primary superblock gone; the mirror remains
    before = file_bytes(image)
    mkfs_error(mkfs(image), 1, "ctrfs", "mirror")
    assert file_bytes(image) == before


def test_refuses_ext4_without_force(tmp_path):
    path = tmp_path / "ext4.img"
    make_ext4(path)
    before = file_bytes(path)
    mkfs_error(mkfs(path), 1, "ext4", "-f")
    assert file_bytes(path) == before
    assert_ok(mkfs("-q", "-f", path))
    assert_ctrfs(path)
    # the ext4 signature is wiped: blkid no longer sees a file system there
    probe = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(path)], capture_output=True, text=True)
    assert probe.stdout.strip() == ""


# ---- dry run ------------------------------------------------------------------------------------
def test_dry_run_writes_nothing(tmp_path):
    path = tmp_path / "dry.img"
    sparse(path, 64 * MiB)
    before = file_bytes(path)
    res = assert_ok(mkfs("-n", "-s", "96M", path))
    assert "superblock mirror" in res.out and "nothing written" in res.out
    assert "96.0 MiB" in res.out
    assert file_bytes(path) == before


def test_dry_run_over_ctrfs_with_force_writes_nothing(image):
    before = file_bytes(image)
    assert_ok(mkfs("-n", "-f", image))
    assert file_bytes(image) == before


def test_dry_run_creates_no_file(tmp_path):
    path = tmp_path / "none.img"
    res = assert_ok(mkfs("-n", "-s", "64M", path))
    assert "segments" in res.out
    assert not path.exists()


# ---- bad input --------------------------------------------------------------------------------
def test_too_small_new_file(tmp_path):
    path = tmp_path / "tiny.img"
    mkfs_error(mkfs("-s", "100K", path), 8, "too small")
    assert not path.exists()


def test_too_small_existing_file(tmp_path):
    path = tmp_path / "tiny.img"
    path.write_bytes(b"\xaa" * 65536)
    mkfs_error(mkfs(path), 8, "too small")
    assert path.read_bytes() == b"\xaa" * 65536


def test_empty_existing_file(tmp_path):
    path = tmp_path / "empty.img"
    path.write_bytes(b"")
    mkfs_error(mkfs(path), 8, "too small")
    assert path.read_bytes() == b""


@pytest.mark.parametrize("args,fragment", [
    (["-b", "3000"], "block size"),
    (["-b", "2048"], "block size"),
    (["-b", "131072"], "block size"),
    (["--segment-size", "4097"], "multiple"),
    (["--segment-size", "32K"], "segment size"),          # 8 blocks
    (["-b", "4096", "--segment-size", "512M"], "segment size"),  # 131072 blocks
    (["-s", "abc"], "size"),
    (["-s", "0"], "size"),
    (["-s", "-5M"], "-s"),
    (["--bogus"], "--bogus"),
    (["-U", "not-a-uuid"], "UUID"),
    (["-U", "0b0e5b7e-8b8a-4d25-9f3c"], "UUID"),
    (["-L", "y" * (C.LABEL_MAX + 1)], "label"),
    (["-L", "é" * 33], "label"),                           # 66 bytes in UTF-8
])
def test_bad_options(tmp_path, args, fragment):
    path = tmp_path / "opt.img"
    mkfs_error(mkfs(*args, "-s", "64M", path) if "-s" not in args else mkfs(*args, path), 16, fragment)
    assert not path.exists()


def test_bad_options_touch_nothing(image):
    before = file_bytes(image)
    mkfs_error(mkfs("-f", "-b", "5000", image), 16, "block size")
    assert file_bytes(image) == before


def test_no_device_argument():
    mkfs_error(mkfs(), 16, "DEVICE")


def test_missing_device_without_size(tmp_path):
    path = tmp_path / "missing.img"
    mkfs_error(mkfs(path), 8, "no such file")
    assert not path.exists()


def test_missing_directory_for_new_file(tmp_path):
    mkfs_error(mkfs("-s", "64M", tmp_path / "nodir" / "x.img"), 8, "cannot create")


def test_directory_is_not_a_device(tmp_path):
    mkfs_error(mkfs(tmp_path), 8, "not a regular file or block device")


def test_busy_file_refused(image):
    """A running mount holds an exclusive flock on its device."""
    before = file_bytes(image)
    with open(image, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        mkfs_error(mkfs("-f", image), 8, "in use")
        mkfs_error(mkfs("-n", "-f", image), 8, "in use")
    assert file_bytes(image) == before


# ---- real loop devices --------------------------------------------------------------------------
def test_loop_device(tmp_path, loopdev):
    path = tmp_path / "loop.img"
    sparse(path, 64 * MiB)
    dev = loopdev(path)
    res = assert_ok(mkfs(dev))
    assert "64.0 MiB" in res.out
    assert_ctrfs(dev, 64 * MiB)
    mkfs_error(mkfs(dev), 1, "ctrfs")
    out = assert_ok(ctrfs("images", dev)).out
    assert "@default" in out


def test_loop_device_size_option_refused(tmp_path, loopdev):
    path = tmp_path / "loop.img"
    sparse(path, 64 * MiB)
    dev = loopdev(path)
    mkfs_error(mkfs("-s", "128M", dev), 16, "block device")


def test_read_only_loop_device(tmp_path, loopdev):
    path = tmp_path / "ro.img"
    sparse(path, 64 * MiB)
    before = file_bytes(path)
    dev = loopdev(path, readonly=True)
    mkfs_error(mkfs("-f", dev), 8, "read-only")
    assert file_bytes(path) == before


def test_mounted_device_refused_even_with_force(tmp_path, loopdev):
    path = tmp_path / "mounted.img"
    make_ext4(path)
    dev = loopdev(path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", dev, str(mnt)], check=True)
    try:
        mkfs_error(mkfs("-f", dev), 8, "mounted", str(mnt))
        mkfs_error(mkfs("-f", path), 8, "mounted", dev)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    # ext4 itself rewrites its superblock at umount, so compare what matters: no ctrfs
    # superblock at either end, and the ext4 file system intact.
    raw = file_bytes(path)
    assert C.SUPERBLOCK_MAGIC not in (raw[:8], raw[-4096:-4088])
    subprocess.run(["e2fsck", "-fn", str(path)], check=True, capture_output=True)


def test_refuses_partition_table_without_force(tmp_path):
    path = tmp_path / "disk.img"
    sparse(path, 64 * MiB)
    mbr = bytearray(512)   # one Linux partition from sector 2048, MBR signature
    mbr[446:462] = bytes((0, 0, 0, 0, 0x83, 0, 0, 0)) + (2048).to_bytes(4, "little") + \
        (64 * MiB // 512 - 2048).to_bytes(4, "little")
    mbr[510:512] = b"\x55\xaa"
    with open(path, "r+b") as f:
        f.write(mbr)
    before = file_bytes(path)
    mkfs_error(mkfs(path), 1, "partition table", "-f")
    assert file_bytes(path) == before
    assert_ok(mkfs("-q", "-f", path))
    assert_ctrfs(path)
