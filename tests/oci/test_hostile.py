"""Hostile and broken sources: each refused with one line and its exit code, nothing stored
(the image list is unchanged), fsck clean after.  And what docker accepts, accepted."""
import gzip
import hashlib
import json
import tarfile

import pytest
from ocitree import (Layout, assert_error, assert_ok, ctrfs, describe_image, fsck_clean,
                     image_names, member, mkfs, tar_bytes)

from ctrfs.errors import EXIT_BAD_IMAGE, EXIT_ERROR

D = tarfile.DIRTYPE


def base():
    return [(member("etc", D, mode=0o755), None), (member("etc/passwd"), b"root\n")]


HOSTILE = {
    "dotdot": ([(member("../../etc/evil"), b"x")], "climbs out of the root"),
    "dotdot-inside": ([(member("etc", D), None), (member("etc/../../evil"), b"x")], "climbs out of the root"),
    "hardlink-outside": (base() + [(member("etc/h", tarfile.LNKTYPE, link="../../etc/shadow"), None)],
                         "climbs out of the root"),
    "hardlink-not-yet": ([(member("etc", D), None), (member("etc/h", tarfile.LNKTYPE, link="etc/later"), None),
                          (member("etc/later"), b"x")], "not (yet) in the tree"),
    "hardlink-dir": (base() + [(member("etc/h", tarfile.LNKTYPE, link="etc"), None)], "directory"),
    "symlink-as-dir": (base() + [(member("escape", tarfile.SYMTYPE, link="/etc"), None),
                                 (member("escape/passwd"), b"pwned")], "symlink used as a directory"),
    "symlink-as-dir-dotdot": ([(member("up", tarfile.SYMTYPE, link=".."), None),
                               (member("up/x"), b"x")], "symlink used as a directory"),
    "file-as-dir": (base() + [(member("etc/passwd/x"), b"x")], "not a directory"),
}


@pytest.fixture
def device(tmp_path):
    img = mkfs(tmp_path / "fs.img", "32M")
    layer = tmp_path / "ok.tar"
    layer.write_bytes(tar_bytes(base()))
    assert_ok(ctrfs("import", img, layer, "--name", "ok:1"))
    return img


def refused(img, source, code, fragment, *extra):
    before = image_names(img)
    res = ctrfs("import", img, source, *extra)
    line = assert_error(res, code, fragment, prog="ctrfs")
    assert image_names(img) == before, "something was stored"
    fsck_clean(img)
    return line


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_refused(device, tmp_path, case):
    members, fragment = HOSTILE[case]
    bad = tmp_path / f"{case}.tar"
    bad.write_bytes(tar_bytes(members))
    refused(device, bad, EXIT_BAD_IMAGE, fragment, "--name", "bad:1")


def test_size_that_lies_and_truncated_streams(device, tmp_path):
    good = tar_bytes(base() + [(member("etc/big"), bytes(range(256)) * 64)])
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good[:len(good) // 2 + 100])
    refused(device, cut, EXIT_BAD_IMAGE, "truncated", "--name", "bad:1")
    lie = bytearray(good)
    i = good.index(b"etc/big") + 124            # the size field of that header
    lie[i:i + 12] = b"%011o\0" % (1 << 20)
    lie[good.index(b"etc/big") + 148:good.index(b"etc/big") + 156] = b"        "
    csum = sum(lie[good.index(b"etc/big"):good.index(b"etc/big") + 512])
    lie[good.index(b"etc/big") + 148:good.index(b"etc/big") + 156] = b"%06o\0 " % csum
    (tmp_path / "lie.tar").write_bytes(bytes(lie))
    refused(device, tmp_path / "lie.tar", EXIT_BAD_IMAGE, "truncated", "--name", "bad:1")
    hdr = good.index(b"etc/big")
    junk = good[:hdr] + b"\xff" * 512 + good[hdr + 512:]   # a header that is garbage
    (tmp_path / "junk.tar").write_bytes(junk)
    refused(device, tmp_path / "junk.tar", EXIT_BAD_IMAGE, "corrupt tar header", "--name", "bad:1")
    gz = gzip.compress(good)
    (tmp_path / "cut.tar.gz").write_bytes(gz[:len(gz) - 20])
    refused(device, tmp_path / "cut.tar.gz", EXIT_BAD_IMAGE, "gzip", "--name", "bad:1")
    bad_gz = bytearray(gz)
    bad_gz[len(gz) // 2] ^= 0xFF
    (tmp_path / "bad.tar.gz").write_bytes(bytes(bad_gz))
    refused(device, tmp_path / "bad.tar.gz", EXIT_BAD_IMAGE, "gzip", "--name", "bad:1")
    (tmp_path / "empty.tar").write_bytes(b"")
    refused(device, tmp_path / "empty.tar", EXIT_BAD_IMAGE, "not a tar", "--name", "bad:1")


def test_decompression_bomb_is_enospc_cleanly(device, tmp_path):
    # 64 MiB of distinct blocks (dedup cannot save it) as a ~100 KiB gzip, into 32 MiB
    data = b"".join(i.to_bytes(8, "little") * 512 for i in range(16384))
    bomb = gzip.compress(tar_bytes(base() + [(member("bomb"), data)]), 9)
    assert len(bomb) < 2 << 20
    (tmp_path / "bomb.tar.gz").write_bytes(bomb)
    refused(device, tmp_path / "bomb.tar.gz", EXIT_ERROR, "no space left", "--name", "bomb:1")
    # and the device still takes a normal import afterwards
    assert_ok(ctrfs("import", device, _small(tmp_path), "--name", "after:1"))
    fsck_clean(device)


def _small(tmp_path):
    p = tmp_path / "small.tar"
    p.write_bytes(tar_bytes(base()))
    return p


@pytest.fixture
def oci(tmp_path):
    lay = Layout(tmp_path)
    lay.new("t")
    lay.add_tar("t", tar_bytes(base() + [(member("etc/group"), b"root:x:0:\n")]))   # not on the device yet
    return lay


def _blobs(lay):
    index = json.loads((lay.dir / "index.json").read_text())
    path = lambda d: lay.dir / "blobs/sha256" / d["digest"].split(":")[1]  # noqa: E731
    manifest = json.loads(path(index["manifests"][0]).read_bytes())
    return path, manifest


def test_layer_digest_mismatch_refused(device, oci):
    path, manifest = _blobs(oci)
    blob = path(manifest["layers"][0])
    data = bytearray(blob.read_bytes())
    assert data[:2] == b"\x1f\x8b"
    data[5] ^= 1                       # the gzip header's mtime: still decompresses, same size
    blob.write_bytes(bytes(data))
    refused(device, f"oci:{oci.dir}:t", EXIT_BAD_IMAGE, "digest mismatch", "--name", "bad:1")


def test_config_and_manifest_tampering_refused(device, oci):
    path, manifest = _blobs(oci)
    cfg = path(manifest["config"])
    good = cfg.read_bytes()
    cfg.write_bytes(good.replace(b'"rootfs"', b'"rootfs" '))
    refused(device, f"oci:{oci.dir}:t", EXIT_BAD_IMAGE, "config", "--name", "bad:1")
    cfg.write_bytes(good)
    path(manifest["layers"][0]).unlink()
    refused(device, f"oci:{oci.dir}:t", EXIT_BAD_IMAGE, "missing", "--name", "bad:1")


def test_diff_id_mismatch_refused(device, oci, tmp_path):
    """A layer blob that matches its descriptor but not the config's diff_id."""
    path, manifest = _blobs(oci)
    cfg_d = manifest["config"]
    cfg = json.loads(path(cfg_d).read_bytes())
    cfg["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    raw = json.dumps(cfg).encode()
    h = hashlib.sha256(raw).hexdigest()
    (oci.dir / "blobs/sha256" / h).write_bytes(raw)
    manifest["config"] = dict(cfg_d, digest="sha256:" + h, size=len(raw))
    mraw = json.dumps(manifest).encode()
    mh = hashlib.sha256(mraw).hexdigest()
    (oci.dir / "blobs/sha256" / mh).write_bytes(mraw)
    index = json.loads((oci.dir / "index.json").read_text())
    index["manifests"][0].update(digest="sha256:" + mh, size=len(mraw))
    (oci.dir / "index.json").write_text(json.dumps(index))
    refused(device, f"oci:{oci.dir}:t", EXIT_BAD_IMAGE, "diff_id mismatch", "--name", "bad:1")


def test_digest_that_is_a_path_refused(device, oci):
    index = json.loads((oci.dir / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
    (oci.dir / "index.json").write_text(json.dumps(index))
    refused(device, f"oci:{oci.dir}:t", EXIT_BAD_IMAGE, "bad digest", "--name", "bad:1")


def test_usage_errors(device, oci, tmp_path):
    refused(device, f"oci:{oci.dir}:nope", 16, "no image tagged 'nope'")
    refused(device, f"oci:{tmp_path}", 16, "not an OCI image layout")
    refused(device, "-", 16, "needs --name")
    refused(device, f"oci:{oci.dir}:t", 16, "bad image name", "--name", "UPPER/@x:1")
    refused(device, tmp_path / "missing.tar", 16, "no such file", "--name", "m:1")
    refused(device, _small(tmp_path), EXIT_ERROR, "exists", "--name", "ok:1")


def test_docker_semantics_accepted(device, tmp_path):
    """Absolute paths rooted at the image root, symlinks stored verbatim (never followed on
    the host), a later duplicate entry replacing the earlier one."""
    layer = tar_bytes([
        (member("/etc", D, mode=0o755), None),
        (member("/etc/passwd"), b"first\n"),
        (member("./etc/passwd"), b"second\n"),
        (member("etc/link", tarfile.SYMTYPE, link="../../../../etc/shadow"), None),
        (member("etc/dir", D), None),
        (member("etc/dir"), b"now a file\n"),
        (member("a/b/c"), b"parents made\n"),
    ])
    (tmp_path / "ok2.tar").write_bytes(layer)
    assert_ok(ctrfs("import", device, tmp_path / "ok2.tar", "--name", "ok:2"))
    rows, _links = describe_image(device, "ok:2")
    assert rows["/etc/link"]["link"] == b"../../../../etc/shadow"
    assert rows["/etc/dir"]["size"] == len(b"now a file\n")
    import hashlib as h
    assert rows["/etc/passwd"]["content"] == h.sha256(b"second\n").hexdigest()
    assert rows["/a/b"]["mode"] & 0o777 == 0o755
    fsck_clean(device)


def test_empty_layer_accepted(device, tmp_path):
    """A layer with no members (docker writes them for ENV/CMD steps) is a layer: two zero
    blocks, not an empty stream."""
    (tmp_path / "empty.tar").write_bytes(tar_bytes([]))
    assert_ok(ctrfs("import", device, tmp_path / "empty.tar", "--name", "empty:1"))
    assert set(describe_image(device, "empty:1")[0]) == {"/"}
    fsck_clean(device)
