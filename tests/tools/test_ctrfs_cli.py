"""The `ctrfs` command through its console script: images, commit, rm, clone, debug."""
import fcntl
import json
import os
import stat
import subprocess

import pytest
from toolrun import assert_error, assert_ok, ctrfs, file_bytes, run

from ctrfs.device import Device
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C


def ctrfs_error(res, code, *fragments):
    return assert_error(res, code, *fragments, prog="ctrfs")


def commit_image(path, image, files=((b"hello", b"x" * 10000),)):
    """Write files into @default and commit it as `image` through the engine API."""
    dev = Device(str(path))
    try:
        engine = Engine.open(dev)
        fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
        for name, data in files:
            ino = fs.mknod(C.ROOT_INO, name, stat.S_IFREG | 0o644).ino
            fs.write(ino, 0, data)
        fs.commit(image=image)
        return {n.decode(errors="backslashreplace"): e for n, e in engine.snapshots()}
    finally:
        dev.close()


def images_json(path):
    return {r["name"]: r for r in json.loads(assert_ok(ctrfs("images", "--json", path)).out)}


# ---- images --------------------------------------------------------------------------------
def test_images_on_fresh_fs(image):
    res = assert_ok(ctrfs("images", image))
    header, *rows = res.out.splitlines()
    assert header.split() == ["NAME", "TAG", "KIND", "ROOT", "SIZE", "CREATED", "PARENT"]
    assert len(rows) == 1 and rows[0].split()[:3] == ["@default", "-", "writable"]
    assert res.err == ""
    rows = images_json(image)
    assert list(rows) == ["@default"]
    r = rows["@default"]
    assert (r["kind"], r["tag"], r["size"], r["parent"]) == ("writable", "", 0, None)
    assert len(r["root"]) == 64


def test_images_lists_committed_image(image):
    snaps = commit_image(image, b"busybox:1")
    rows = images_json(image)
    assert set(rows) == {"@default", "busybox:1"}
    r = rows["busybox:1"]
    assert (r["image"], r["tag"], r["kind"]) == ("busybox", "1", "image")
    # the image is a layer over the tree's previous parent (none yet); the tree goes on over it
    assert r["parent"] is None and rows["@default"]["parent"] == "busybox:1"
    assert r["size"] == 10000
    assert r["root"] == snaps["busybox:1"]["root"][1].hex()
    assert r["created"][:4].isdigit() and "T" in r["created"]
    text = assert_ok(ctrfs("images", image)).out
    line = next(x for x in text.splitlines() if x.startswith("busybox"))
    assert line.split()[:4] == ["busybox", "1", "image", r["root"][:12]]
    long = assert_ok(ctrfs("images", "--long", "--bytes", image)).out
    assert r["root"] in long and "10000" in long


def test_tag_split_at_last_colon_but_not_a_port(image):
    """Keys as older ctrfs stored them (untagged ones too) list as before."""
    commit_image(image, b"registry:5000/app", files=())
    commit_image(image, b"registry:5000/app:v2", files=((b"f", b"y"),))
    rows = images_json(image)
    assert (rows["registry:5000/app"]["image"], rows["registry:5000/app"]["tag"]) == ("registry:5000/app", "")
    assert (rows["registry:5000/app:v2"]["image"], rows["registry:5000/app:v2"]["tag"]) == \
        ("registry:5000/app", "v2")


def test_images_while_device_is_locked(image):
    """A read-write mount holds LOCK_EX: listing still works, from the last checkpoint."""
    with open(image, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        res = assert_ok(ctrfs("images", image))
    assert "@default" in res.out
    assert len(res.err.splitlines()) == 1 and "last checkpoint" in res.err


def test_images_writes_nothing(image):
    before = file_bytes(image)
    assert_ok(ctrfs("images", image))
    assert file_bytes(image) == before


def test_images_missing_device(tmp_path):
    ctrfs_error(ctrfs("images", tmp_path / "nope.img"), 8, "no such file")


@pytest.mark.parametrize("args", [("images", "{}"), ("rm", "{}", "x"), ("clone", "{}", "a", "b"),
                                  ("debug", "dump-super", "{}"), ("debug", "dump-checkpoints", "{}"),
                                  ("debug", "dump-segment", "{}", "0"), ("debug", "dump-tree", "{}")])
def test_not_ctrfs_is_operational_and_names_the_device(tmp_path, args):
    """As fsck does: something that is not ctrfs is exit 8, and the line names it."""
    path = tmp_path / "zero.img"
    path.write_bytes(bytes(1 << 20))
    res = ctrfs(*[a.format(path) for a in args])
    ctrfs_error(res, 8, f"{path}: not a ctrfs file system")
    assert path.read_bytes() == bytes(1 << 20)


def test_damaged_messages_name_the_device(image):
    with open(image, "r+b") as f:          # both checkpoint slots gone, superblocks intact
        f.seek(4096)
        f.write(bytes(2 * 4096))
    ctrfs_error(ctrfs("images", image), 4, f"{image}: ")


@pytest.mark.parametrize("tool", ["ctrfs", "mkfs.ctrfs", "fsck.ctrfs", "mount.ctrfs", "umount.fuse.ctrfs"])
def test_version(tool):
    from ctrfs import __version__
    for flag in ("-V", "--version"):
        res = assert_ok(run(tool, flag))
        assert res.out == f"{tool} {__version__} (ctrfs format 2)\n", res


# ---- rm and clone ----------------------------------------------------------------------------
def test_clone_and_rm(image):
    assert_ok(ctrfs("clone", image, "@default", "work"))          # stored as work:latest
    assert_ok(ctrfs("clone", "--image", image, "work", "base:1"))
    rows = images_json(image)
    assert rows["work:latest"]["kind"] == "writable" and rows["work:latest"]["parent"] == "@default"
    assert rows["base:1"]["kind"] == "image" and rows["base:1"]["parent"] == "work:latest"
    assert rows["work:latest"]["root"] == rows["@default"]["root"] == rows["base:1"]["root"]
    assert_ok(ctrfs("rm", image, "work", "base:1"))
    assert list(images_json(image)) == ["@default"]


def test_clone_errors(image):
    ctrfs_error(ctrfs("clone", image, "nope", "x"), 16, "nope")
    ctrfs_error(ctrfs("clone", image, "@default", "@default"), 16, "ctrfs's own")
    assert_ok(ctrfs("clone", image, "@default", "x"))
    ctrfs_error(ctrfs("clone", image, "@default", "x:latest"), 16, "exists")
    ctrfs_error(ctrfs("rm", image, "nope"), 16, "nope")
    assert list(images_json(image)) == ["@default", "x:latest"]


def test_rm_refused_while_mounted(image):
    with open(image, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        ctrfs_error(ctrfs("rm", image, "@default"), 8, "in use")


# ---- commit --------------------------------------------------------------------------------------
def test_commit_not_a_mount(tmp_path):
    ctrfs_error(ctrfs("commit", tmp_path, "img:1"), 1, "not a ctrfs mount")


def test_commit_on_other_fs_type(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(mnt)], check=True)
    try:
        ctrfs_error(ctrfs("commit", mnt, "img:1"), 1, "not a ctrfs mount", "tmpfs")
        assert not any("ctrfs" in x for x in os.listxattr(mnt))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_commit_missing_mountpoint(tmp_path):
    ctrfs_error(ctrfs("commit", tmp_path / "nope", "img:1"), 8, "no such directory")


def test_commit_bad_name(tmp_path):
    ctrfs_error(ctrfs("commit", tmp_path, "/abs"), 16, "bad image name")
    ctrfs_error(ctrfs("commit", tmp_path, ""), 16, "bad image name")


# ---- debug ----------------------------------------------------------------------------------------
def test_debug_dump_super(image):
    out = assert_ok(ctrfs("debug", "dump-super", image)).out
    assert "block_size: 4096" in out and "mirror superblock" in out
    assert out.count("  valid") == 2


def test_debug_dump_super_not_ctrfs(tmp_path):
    path = tmp_path / "zero.img"
    path.write_bytes(bytes(1 << 20))
    res = ctrfs("debug", "dump-super", path)
    ctrfs_error(res, 8, "not a ctrfs file system")
    assert "INVALID" in res.out


def test_debug_dump_checkpoints(image):
    out = assert_ok(ctrfs("debug", "dump-checkpoints", image)).out
    assert "newest valid checkpoint: seq 1" in out


def test_debug_dump_node_segment_tree(image):
    snaps = commit_image(image, b"busybox:1")
    root_paddr = snaps["busybox:1"]["root"][0]
    out = assert_ok(ctrfs("debug", "dump-node", image, root_paddr)).out
    assert f"node at block {root_paddr}: tree fs" in out
    assert "b'hello'" in out and "size 10000" in out
    seg = assert_ok(ctrfs("debug", "dump-segment", image, 0)).out
    assert "unit at offset 0" in seg and "node (fs)" in seg and "data" in seg
    tree = assert_ok(ctrfs("debug", "dump-tree", image, "busybox:1")).out
    assert "b'hello'" in tree and "block index 2" in tree
    snap = assert_ok(ctrfs("debug", "dump-tree", image, "--system", "snap")).out
    assert "'busybox:1' image" in snap
    assert_ok(ctrfs("debug", "dump-tree", image, "--system", "ca"))
    assert_ok(ctrfs("debug", "dump-tree", image, "--system", "usage"))


def test_debug_errors(image):
    ctrfs_error(ctrfs("debug", "dump-node", image, 3), 4, "bad magic")
    ctrfs_error(ctrfs("debug", "dump-node", image, 1 << 40), 16, "beyond the device")
    ctrfs_error(ctrfs("debug", "dump-node", image, "x"), 16, "not a number")
    ctrfs_error(ctrfs("debug", "dump-segment", image, 100000), 16, "out of range")
    ctrfs_error(ctrfs("debug", "dump-tree", image), 16, "--system")
    ctrfs_error(ctrfs("debug", "dump-tree", image, "nope"), 16, "nope")
    ctrfs_error(ctrfs("debug", "dump-whatever", image), 16, "invalid choice")


# ---- usage ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,fragment", [
    ([], "required"),
    (["frobnicate"], "invalid choice"),
    (["images"], "DEVICE"),
    (["images", "--nope", "x"], "--nope"),
    (["commit", "/mnt"], "NAME"),
])
def test_usage_errors(args, fragment):
    ctrfs_error(ctrfs(*args), 16, fragment)


def test_help_exits_zero():
    res = assert_ok(ctrfs("--help"))
    assert "images" in res.out and "commit" in res.out


# ---- the shared error plumbing (in process) ------------------------------------------------------
def _explode(_args):
    raise RuntimeError("boom\nsecond line")


def test_unexpected_error_is_one_line_exit_8(capsys, monkeypatch):
    from ctrfs.tool import ToolParser, run_tool

    monkeypatch.delenv("CTRFS_DEBUG", raising=False)
    assert run_tool("tool", ToolParser(prog="tool"), _explode, []) == 8
    err = capsys.readouterr().err
    assert err == "tool: internal error: RuntimeError: boom second line\n"


def test_debug_env_adds_traceback(capsys, monkeypatch):
    from ctrfs.tool import ToolParser, run_tool

    monkeypatch.setenv("CTRFS_DEBUG", "1")
    assert run_tool("tool", ToolParser(prog="tool"), _explode, []) == 8
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("tool: internal error: RuntimeError: boom second line\n")
