"""`ctrfs import` of real OCI layouts built with umoci, compared file by file (content, mode,
owner, mtime, xattrs, hardlink groups, symlink targets, rdev) with `umoci unpack` of the
same image; a docker-archive written by skopeo from the same image."""
import hashlib
import json
import os
import tarfile

import pytest
from ocitree import (CAP, Layout, assert_ok, assert_same_tree, ctrfs, describe_dir,
                     describe_image, fsck_clean, image_names, member, mkfs, sh, tar_bytes)

from ctrfs.device import Device
from ctrfs.engine import Engine
from ctrfs.oci import imagemeta

LONG = "d" * 120 + "/" + "f" * 150


def crafted_layer():
    """What umoci repack does not write: an opaque dir, a hardlink to a lower layer's file,
    trusted.* and security.capability in PAX, a block device, long names, ns times."""
    return tar_bytes([
        (member("etc", tarfile.DIRTYPE, mode=0o755), None),
        (member("etc/.wh..wh..opq", mode=0), b""),
        (member("etc/only.txt", pax={"mtime": "1600000000.123456789",
                                     "SCHILY.xattr.trusted.note": "t"}), b"only\n"),
        (member("bin/busybox-again", tarfile.LNKTYPE, link="bin/busybox"), None),
        (member("dev/sda", tarfile.BLKTYPE, mode=0o660, major=8, minor=0), None),
        (member("d" * 120, tarfile.DIRTYPE, mode=0o700), None),
        (member(LONG, uid=4242, gid=4343), b"long\n"),
        (member("bin/longlink", tarfile.SYMTYPE, link="/" + "x" * 300), None),
        (member("bin/pong", pax={"SCHILY.xattr.security.capability": CAP.decode("latin-1")}), b"pong"),
    ])


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("oci")
    lay = Layout(root)
    lay.busybox("a")
    # B: deletions (whiteouts), a change, a hardlink to a file of layer A, a chown
    b = lay.bundle("a")
    r = b / "rootfs"
    os.unlink(r / "etc/hello-link.txt")
    sh("rm", "-rf", r / "tmp")
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nme:x:1000:1000::/:/bin/sh\n")
    os.link(r / "bin/ping", r / "usr/bin/ping-link")
    os.chown(r / "etc/hello.txt", 7, 8)
    lay.repack("a", b, "b")
    lay.add_tar("b", crafted_layer(), "c")
    return lay


@pytest.mark.parametrize("tag", ["a", "b", "c"])
def test_image_matches_umoci_unpack(layout, tmp_path, tag):
    img = mkfs(tmp_path / "fs.img")
    res = assert_ok(ctrfs("import", img, f"oci:{layout.dir}:{tag}", "--name", f"bb:{tag}"))
    assert f"imported bb:{tag}" in res.out
    assert_same_tree(describe_image(img, f"bb:{tag}"), describe_dir(layout.unpack(tag)), tag)
    fsck_clean(img)


def test_config_kept_and_layers_shared(layout, tmp_path):
    img = mkfs(tmp_path / "fs.img")
    res = assert_ok(ctrfs("import", img, f"oci:{layout.dir}", "--name", "bb"))   # every tag
    assert "bb:c: 3 layers (1 new)" in res.out.replace("imported ", ""), res
    names = image_names(img)
    layers = [n for n in names if n.startswith(b"@layer/sha256:")]
    assert len(layers) == 3                           # A, A+B, A+B+C: each stored once
    index = json.loads((layout.dir / "index.json").read_text())
    ref = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    blob = lambda d: (layout.dir / "blobs/sha256" / d["digest"].split(":")[1]).read_bytes()  # noqa: E731
    manifest = json.loads(blob(ref["c"]))
    config = blob(manifest["config"])
    dev = Device(str(img), readonly=True)
    try:
        eng = Engine.open(dev)
        tree = eng.tree(b"bb:c")
        assert imagemeta.read_config(tree) == config
        assert imagemeta.config_digest(tree) == manifest["config"]["digest"]
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        assert imagemeta.read_layer(tree)[0] == diff_ids[-1]
        assert eng.snapshot(b"bb:c")["parent_name"] == b"@layer/" + imagemeta.read_layer(tree)[1].encode()
    finally:
        dev.close()
    again = ctrfs("import", img, f"oci:{layout.dir}:c", "--name", "other:c")
    assert "3 layers (0 new)" in again.out, again          # nothing read again
    fsck_clean(img)


def test_same_image_same_root_hash_on_two_devices(layout, tmp_path):
    one, two = mkfs(tmp_path / "one.img", "64M"), mkfs(tmp_path / "two.img", "200M")
    assert_ok(ctrfs("import", one, f"oci:{layout.dir}:c", "--name", "x:c"))
    assert_ok(ctrfs("import", two, f"oci:{layout.dir}:a", "--name", "y:a"))   # another history first
    assert_ok(ctrfs("import", two, f"oci:{layout.dir}:c", "--name", "x:c"))
    assert image_names(one)[b"x:c"] == image_names(two)[b"x:c"]


def test_docker_archive_from_skopeo(layout, tmp_path):
    archive = tmp_path / "bb.tar"
    sh("skopeo", "copy", f"oci:{layout.dir}:c", f"docker-archive:{archive}:bb:c")
    img = mkfs(tmp_path / "fs.img")
    res = assert_ok(ctrfs("import", img, f"docker-archive:{archive}"))
    assert "imported docker.io/library/bb:c: 3 layers (3 new)" in res.out, res
    assert_same_tree(describe_image(img, "docker.io/library/bb:c"), describe_dir(layout.unpack("c")))
    # the layers are the OCI image's (same diff_ids, same ChainIDs): nothing new
    res = assert_ok(ctrfs("import", img, f"oci:{layout.dir}:c", "--name", "bb:oci"))
    assert "(0 new)" in res.out
    fsck_clean(img)


def test_zstd_gzip_and_stdin_layers(layout, tmp_path):
    import gzip

    import zstandard
    raw = crafted_layer()
    base = tar_bytes([(member("bin", tarfile.DIRTYPE, mode=0o755), None),
                      (member("bin/busybox", mode=0o755), b"bb"), (member("dev", tarfile.DIRTYPE), None)])
    img = mkfs(tmp_path / "fs.img")
    (tmp_path / "l.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(base + b""))
    (tmp_path / "l.tar.gz").write_bytes(gzip.compress(base))
    assert_ok(ctrfs("import", img, tmp_path / "l.tar.zst", "--name", "z:1"))
    assert_ok(ctrfs("import", img, tmp_path / "l.tar.gz", "--name", "g:1"))
    res = ctrfs("import", img, "-", "--name", "s:1", input=base.decode("latin-1"))
    assert_ok(res)
    names = image_names(img)
    assert names[b"z:1"] == names[b"g:1"] == names[b"s:1"]
    chain = "sha256:" + hashlib.sha256(base).hexdigest()
    assert names[b"@layer/" + chain.encode()] == names[b"z:1"]
    assert raw                                           # (the crafted layer parses alone too)
    fsck_clean(img)
