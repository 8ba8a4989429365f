"""`ctrfs export`: a three-layer image built in process through FileSystem, exported as an
OCI layout that umoci unpacks and skopeo copies, as a directory and as a rootfs tar, each
compared file by file with the tree read through FileSystem; determinism; bad input."""
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from exporttree import ROOT, assert_same, dir_manifest, fs_manifest

from ctrfs.device import Device
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.format.items import dirent_key, pack_dirent

BIN = Path(sys.executable).parent
CTRFS = str(BIN / "ctrfs")
# a valid VFS capability (v2, effective): cap_net_bind_service permitted
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
T0 = 1_700_000_000_123_456_789


def ctrfs(*args, check=True):
    r = subprocess.run([CTRFS, *map(str, args)], capture_output=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def mkfile(fs, d, name, data=b"", mode=0o644, **kw):
    ino = fs.mknod(d, name, stat.S_IFREG | mode, **kw).ino
    if data:
        fs.write(ino, 0, data)
    return ino


def stamp(fs, ino, k=0):
    fs.setattr(ino, mtime_ns=T0 + k * 1_000_000_007)


def walk_stamp(fs, ino=ROOT, k=0):
    """Fixed nanosecond mtimes for what has the clock's (new or changed since the last
    stamp), dirs too: the tree does not depend on the clock."""
    for _name, child, _c in list(fs.readdir(ino)):
        k += 1
        if fs.getattr(child).is_dir:
            k = walk_stamp(fs, child, k)
        elif fs.getattr(child).mtime_ns > T0 + 10 ** 12:
            stamp(fs, child, k)
    if fs.getattr(ino).mtime_ns > T0 + 10 ** 12:
        stamp(fs, ino, k + 1)
    return k + 1


def build_layers(fs):
    """Layer 1: the base."""
    for d in (b"bin", b"etc", b"usr", b"var", b"rep", b"dev"):
        fs.mkdir(ROOT, d, 0o755)
    bin_, etc, usr, var, rep, dev = (fs.lookup(ROOT, n) for n in (b"bin", b"etc", b"usr", b"var", b"rep", b"dev"))
    lib = fs.mkdir(usr, b"lib", 0o755).ino
    gone = fs.mkdir(var, b"gone", 0o700).ino
    mkfile(fs, gone, b"x", b"doomed")
    mkfile(fs, rep, b"old", b"old content")
    mkfile(fs, etc, b"passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    tool = mkfile(fs, bin_, b"tool", b"\x7fELF" + bytes(range(256)) * 40, mode=0o755)
    fs.setxattr(tool, b"security.capability", CAPABILITY)
    fs.link(tool, bin_, b"tool2")
    fs.symlink(bin_, b"sh", b"/bin/tool")
    fs.symlink(etc, b"root-link", b"/")
    fs.mknod(dev, b"null", stat.S_IFCHR | 0o666, rdev=os.makedev(1, 3))
    fs.mknod(dev, b"fifo", stat.S_IFIFO | 0o620)
    big = mkfile(fs, lib, b"big", b"head" * 1024)
    fs.write(big, 6 << 20, b"tail" * 2048)                     # 6 MiB of hole between
    owned = mkfile(fs, etc, b"owned", b"mine", mode=0o4750, uid=1234, gid=5678)
    fs.setxattr(owned, b"user.note", b"hello")
    fs.setxattr(owned, b"trusted.bin", bytes(range(256)))
    fs.setattr(fs.lookup(ROOT, b"var"), uid=7, gid=8, mode=0o1777)
    walk_stamp(fs)


def change_layer2(fs):
    etc, var = fs.lookup(ROOT, b"etc"), fs.lookup(ROOT, b"var")
    gone = fs.lookup(var, b"gone")
    fs.unlink(gone, b"x")
    fs.rmdir(var, b"gone")                                       # -> whiteout
    rep = fs.lookup(ROOT, b"rep")
    fs.unlink(rep, b"old")
    fs.rmdir(ROOT, b"rep")
    rep = fs.mkdir(ROOT, b"rep", 0o750).ino                      # replaced -> opaque
    mkfile(fs, rep, b"new", b"new content")
    fs.link(fs.lookup(etc, b"passwd"), etc, b"passwd-link")      # link to a lower-layer file
    mkfile(fs, etc, b"l" * 150, b"a long name")
    fs.setxattr(fs.lookup(etc, b"owned"), b"user.more", b"\0\1\2")
    walk_stamp(fs, k=100)


def change_layer3(fs):
    bin_, dev, etc = fs.lookup(ROOT, b"bin"), fs.lookup(ROOT, b"dev"), fs.lookup(ROOT, b"etc")
    tool = fs.lookup(bin_, b"tool")
    fs.write(tool, 10, b"patched")                               # both names must follow
    fs.setxattr(tool, b"security.capability", CAPABILITY)
    fs.unlink(etc, b"root-link")
    fs.mknod(dev, b"loop9", stat.S_IFBLK | 0o660, rdev=os.makedev(7, 9), gid=6)
    opt = fs.mkdir(ROOT, b"opt", 0o755).ino
    mkfile(fs, opt, b"zeros", bytes(3 << 20))                    # all hole
    walk_stamp(fs, k=200)


def build_device(path):
    subprocess.run([str(BIN / "mkfs.ctrfs"), "-q", "-s", "256M", str(path)], check=True)
    engine = Engine.open(Device(str(path)))
    try:
        fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
        build_layers(fs)
        fs.commit(image=b"base:1")
        engine.clone(b"base:1", b"work")
        fs = FileSystem(engine, b"work")
        change_layer2(fs)
        fs.commit(image=b"app:2")
        change_layer3(fs)
        fs.commit(image=b"app:3")
    finally:
        engine.close()


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "dev.img"
    build_device(path)
    return path


def image_manifest(device, name, **kw):
    engine = Engine.open(Device(str(device), readonly=True))
    try:
        return fs_manifest(FileSystem(engine, name, writable=False), **kw)
    finally:
        engine.close()


def tree_bytes(root):
    """Every file's bytes under a directory, by relative path (for identical-output checks)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


def layer_members(layout, index):
    man = json.loads(blob(layout, json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]))
    data = blob(layout, man["layers"][index]["digest"])
    with tarfile.open(fileobj=__import__("io").BytesIO(data)) as t:
        return {m.name: m for m in t.getmembers()}


def blob(layout, digest):
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


# ---- OCI -------------------------------------------------------------------------------------------
def test_oci_umoci_unpack_gives_the_tree(device, tmp_path):
    oci = tmp_path / "oci"
    ctrfs("export", "--format", "oci", device, "app:3", oci)
    index = json.loads((oci / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "3"
    man = json.loads(blob(oci, index["manifests"][0]["digest"]))
    assert len(man["layers"]) == 3
    assert all(lay["mediaType"].endswith("tar+gzip") for lay in man["layers"])
    config = json.loads(blob(oci, man["config"]["digest"]))
    for lay, diff_id in zip(man["layers"], config["rootfs"]["diff_ids"]):
        data = blob(oci, lay["digest"])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == lay["digest"]
        import gzip
        assert "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest() == diff_id
    # the layers say what changed, as the spec writes it
    l2, l3 = layer_members(oci, 1), layer_members(oci, 2)
    assert "var/.wh.gone" in l2 and "rep/.wh..wh..opq" in l2
    assert l2["etc/passwd-link"].islnk() and l2["etc/passwd-link"].linkname == "etc/passwd"
    assert "etc/passwd" not in l2
    assert l2["etc/" + "l" * 150].isfile()
    assert l3["bin/tool"].isfile() and l3["bin/tool2"].islnk() and l3["bin/tool2"].linkname == "bin/tool"
    assert "etc/.wh.root-link" in l3 and l3["dev/loop9"].isblk()
    assert l3["bin/tool"].pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == CAPABILITY
    for tag, name in (("3", "app:3"), ("2", "app:2")):
        if tag == "2":
            oci = tmp_path / "oci2"
            ctrfs("export", "--format", "oci", device, name, oci)
        bundle = tmp_path / f"bundle{tag}"
        r = subprocess.run(["umoci", "unpack", "--image", f"{oci}:{tag}", str(bundle)], capture_output=True)
        assert r.returncode == 0, r.stderr.decode()
        assert_same(dir_manifest(bundle / "rootfs"), image_manifest(device, name.encode()))


def test_oci_skopeo_copy_and_inspect(device, tmp_path):
    oci = tmp_path / "oci"
    ctrfs("export", "--format", "oci", "--tag", "v3", device, "app:3", oci)
    r = subprocess.run(["skopeo", "inspect", f"oci:{oci}:v3"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    info = json.loads(r.stdout)
    assert len(info["Layers"]) == 3 and info["Os"] == "linux"
    archive = tmp_path / "app.tar"
    r = subprocess.run(["skopeo", "copy", f"oci:{oci}:v3", f"docker-archive:{archive}:app:3"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))
    assert len(manifest[0]["Layers"]) == 3


def test_export_is_deterministic(device, tmp_path):
    for fmt, dest in (("oci", "a"), ("oci", "b"), ("tar", "a.tar"), ("tar", "b.tar")):
        ctrfs("export", "--format", fmt, device, "app:3", tmp_path / dest)
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    ctrfs("export", "--format", "oci", "--compress", "none", device, "app:3", tmp_path / "plain")
    man = json.loads((tmp_path / "plain" / "index.json").read_text())
    assert json.loads(blob(tmp_path / "plain", man["manifests"][0]["digest"]))["layers"][0]["mediaType"] \
        == "application/vnd.oci.image.layer.v1.tar"


# ---- a directory, a rootfs tar ----------------------------------------------------------------------
def test_dir_export_gives_the_tree(device, tmp_path):
    out = tmp_path / "root"
    out.mkdir()                                   # an empty directory is fine
    ctrfs("export", "--format", "dir", device, "app:3", out)
    assert_same(dir_manifest(out), image_manifest(device, b"app:3"))
    st = os.stat(out / "opt" / "zeros")
    assert st.st_blocks == 0                      # holes stay holes


def test_rootfs_tar_extracts_to_the_tree(device, tmp_path):
    tarball = tmp_path / "rootfs.tar"
    ctrfs("export", device, "app:3", tarball)
    listing = subprocess.run(["tar", "-tvf", str(tarball)], capture_output=True, text=True, check=True).stdout
    assert "bin/tool2 link to bin/tool" in listing and not ".wh." in listing
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", str(tarball),
                    "-C", str(out)], check=True)
    assert_same(dir_manifest(out), image_manifest(device, b"app:3"))
    r = subprocess.run([CTRFS, "export", str(device), "app:3", "-"], capture_output=True, check=True)
    assert r.stdout == tarball.read_bytes()
    ctrfs("export", device, "app:3", tmp_path / "r.tar.gz")
    import gzip
    assert gzip.decompress((tmp_path / "r.tar.gz").read_bytes()) == tarball.read_bytes()


def test_hostile_image_never_writes_outside_dest(tmp_path):
    """A symlink etc -> OUTSIDE, and crafted items: dirents below the symlink's inode, and a
    name with a slash through it.  The export writes the symlink and refuses the rest."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dev = tmp_path / "dev.img"
    subprocess.run([str(BIN / "mkfs.ctrfs"), "-q", "-s", "64M", str(dev)], check=True)
    engine = Engine.open(Device(str(dev)))
    try:
        fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
        link = fs.symlink(ROOT, b"etc", str(outside).encode()).ino
        f = mkfile(fs, ROOT, b"payload", b"owned")
        fs.commit(image=b"plain")
        fs.tree.put(dirent_key(link, b"passwd"), pack_dirent(f, stat.S_IFREG >> 12))
        fs.commit(image=b"below-symlink")
        fs.tree.delete(dirent_key(link, b"passwd"))
        fs.tree.put(dirent_key(ROOT, b"etc/passwd"), pack_dirent(f, stat.S_IFREG >> 12))
        fs.commit(image=b"slash")
    finally:
        engine.close()
    out = tmp_path / "plain"
    ctrfs("export", "--format", "dir", dev, "plain", out)
    assert os.readlink(out / "etc") == str(outside)
    for name in ("below-symlink", "slash"):
        for fmt in ("dir", "tar", "oci"):
            dest = tmp_path / f"{name}-{fmt}" if fmt != "tar" else tmp_path / f"{name}.tar"
            r = ctrfs("export", "--format", fmt, dev, name, dest, check=False)
            if name == "slash":
                assert r.returncode == 4, r.stderr.decode()
                assert len(r.stderr.decode().strip().splitlines()) == 1
                assert not dest.exists()              # nothing half-done
            else:                                     # a symlink holds no names: not read
                assert r.returncode == 0, r.stderr.decode()
    assert list(outside.iterdir()) == []


# ---- bad input ----------------------------------------------------------------------------------------
def test_bad_input_one_line_and_code(device, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    cases = [
        ((device, "nope:1", tmp_path / "a.tar"), 16, "no image or tree named"),
        (("--format", "oci", device, "app:3", full), 1, "exists and is not empty"),
        (("--format", "zip", device, "app:3", tmp_path / "z"), 16, "invalid choice"),
        ((device, "app:3", tmp_path / "noext"), 16, "--format"),
        ((tmp_path / "missing.img", "app:3", tmp_path / "b.tar"), 8, "missing.img"),
        (("--format", "oci", device, "app:3", "-"), 16, "directory"),
    ]
    for args, code, text in cases:
        r = ctrfs("export", *args, check=False)
        err = r.stderr.decode()
        assert r.returncode == code, (args, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("ctrfs: ") and text in err, err
    assert sorted(os.listdir(tmp_path)) == ["full"]
    assert os.listdir(full) == ["x"]
