"""The file-level transfer (`--format ctrfs`, spec/TRANSFER.md) through a real registry and
a `dir:` store: exact trees, contents the remote or the device already has do not travel
(counted), tampered blobs are refused with nothing stored, the registry's garbage
collector keeps every blob a transfer image needs."""
import json
import os
import subprocess

import pytest
from ocitree import assert_same_tree, ctrfs, describe_dir, describe_image, fsck_clean, image_names, mkfs, on_tty
from regrun import killed_while_stalled, pull, push
from toolrun import BIN, assert_error, assert_ok

from ctrfs.testing.proxy import FaultProxy
from ctrfs.transfer import index as X


def imported(layout, tmp_path, *tags):
    img = mkfs(tmp_path / "fs.img")
    for tag in tags:
        assert_ok(ctrfs("import", img, f"oci:{layout.dir}:{tag}", "--name", f"{tag}:1", "-q"))
    return img


def test_registry_round_trip_and_gc(registry, layout, tmp_path):
    img = imported(layout, tmp_path, "app")
    res = assert_ok(push(img, "app:1", registry, "tx/app:1", "--format", "ctrfs"))
    assert "new contents" in res.out
    registry.garbage_collect()
    other = mkfs(tmp_path / "other.img")
    res = assert_ok(pull(other, registry, "tx/app:1", "--name", "got:1"))
    assert "(ctrfs)" in res.out and "0 already on the device" in res.out
    assert_same_tree(describe_image(other, "got:1"), describe_dir(layout.unpack("app")))
    fsck_clean(other)


def test_only_new_contents_travel(registry, layout, tmp_path):
    """Push base, then app (base + 2 changed files): app sends only those 2 contents;
    pulling app onto a device that holds base fetches only them."""
    img = imported(layout, tmp_path, "base", "app")
    with FaultProxy(registry.host) as proxy:
        first = assert_ok(push(img, "base:1", registry, "tx/img:base", "--format", "ctrfs", host=proxy.host))
        base_uploads = proxy.count("PUT", "/blobs/uploads/")
        proxy.clear()
        second = assert_ok(push(img, "app:1", registry, "tx/img:app", "--format", "ctrfs", host=proxy.host))
        app_uploads = proxy.count("PUT", "/blobs/uploads/")
        app_bytes = proxy.bytes_received()
        assert "2 new contents" in second.out, second.out
        assert app_uploads == 3                      # one pack with the 2 contents, the index, the config
        assert base_uploads > app_uploads
        assert "0 already there" in first.out
        dev = mkfs(tmp_path / "dev.img")
        assert_ok(pull(dev, registry, "tx/img:base", "--name", "b:1", host=proxy.host))
        proxy.clear()
        res = assert_ok(pull(dev, registry, "tx/img:app", "--name", "a:1", host=proxy.host))
        assert "2 fetched" in res.out, res.out
        assert len(proxy.blob_gets()) == 3           # config, index, the one pack
    assert app_bytes < 64 << 10
    assert_same_tree(describe_image(dev, "a:1"), describe_dir(layout.unpack("app")))
    fsck_clean(dev)


@pytest.fixture
def dir_store(layout, tmp_path):
    img = imported(layout, tmp_path, "app")
    store = tmp_path / "store"
    assert_ok(ctrfs("push", img, "app:1", f"dir:{store}:v1"))
    return store


def test_dir_store_round_trip(dir_store, layout, tmp_path):
    dev = mkfs(tmp_path / "dev.img")
    assert_ok(ctrfs("pull", dev, f"dir:{dir_store}:v1", "--name", "d"))
    assert_same_tree(describe_image(dev, "d:v1"), describe_dir(layout.unpack("app")))
    fsck_clean(dev)


def _blobs_of(store, media_type):
    index = json.loads((store / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((store / "blobs/sha256" / digest).read_text())
    return [store / "blobs/sha256" / d["digest"].split(":")[1] for d in manifest["layers"]
            if d["mediaType"] == media_type]


@pytest.mark.parametrize("what", [X.MT_OBJECTS, X.MT_INDEX])
@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_tampered_dir_store_refused(dir_store, tmp_path, what, how):
    victim = max(_blobs_of(dir_store, what), key=os.path.getsize)
    data = bytearray(victim.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x40
    else:
        del data[len(data) // 2:]
    victim.write_bytes(bytes(data))
    dev = mkfs(tmp_path / "dev.img")
    before = image_names(dev)
    res = ctrfs("pull", dev, f"dir:{dir_store}:v1", "--name", "d")
    assert_error(res, 2, "blob", prog="ctrfs")
    assert image_names(dev) == before
    fsck_clean(dev)


def test_transfer_refusals(dir_store, tmp_path):
    dev = mkfs(tmp_path / "dev.img")
    assert_error(ctrfs("pull", dev, f"dir:{tmp_path}/nowhere:v1"), 16, "not a ctrfs transfer directory",
                 prog="ctrfs")
    assert_error(ctrfs("pull", dev, f"dir:{dir_store}:v9"), 3, "no image tagged", prog="ctrfs")
    assert_error(ctrfs("push", dev, "app:1", f"dir:{tmp_path}/s2", "--format", "oci"), 16, "dir:PATH",
                 prog="ctrfs")


def _tar_image(tmp_path, name, files):
    """A device image NAME:1 made from a tar layer of {relative path: bytes}; (device, tree)."""
    tree = tmp_path / f"{name}-tree"
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    tar = tmp_path / f"{name}.tar"
    subprocess.run(["tar", "-C", tree, "--numeric-owner", "--format=posix", "-cf", tar, "."], check=True)
    img = mkfs(tmp_path / f"{name}.img")
    assert_ok(ctrfs("import", img, tar, "--name", f"{name}:1", "-q"))
    return img, tree


@pytest.fixture
def big_image(tmp_path):
    """A device with image big:1, whose 12 MiB file travels as three 4 MiB pieces, and its
    source tree."""
    return _tar_image(tmp_path, "big", {"data/big.bin": os.urandom(12 << 20), "data/small.txt": b"small\n"})


def _objects(registry, repo, tag):
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{registry.host}/{repo}:{tag}"], capture_output=True, check=True).stdout
    return [d["digest"] for d in json.loads(raw)["layers"] if d["mediaType"] == X.MT_OBJECTS]


def test_killed_pull_resumes_from_kept_blobs(registry, big_image, own_tmpdir, tmp_path):
    """kill -9 while the last object blob downloads: no image on the device, fsck clean, the
    blobs that arrived are kept; the next pull fetches only the rest, and then removes them."""
    img, tree = big_image
    assert_ok(push(img, "big:1", registry, "tx/big:1", "--format", "ctrfs"))
    objects = _objects(registry, "tx/big", "1")
    assert len(objects) >= 3
    dev = mkfs(tmp_path / "dev.img")
    before = image_names(dev)
    with FaultProxy(registry.host) as proxy:
        proxy.fault(objects[-1], "stall")
        cmd = [str(BIN / "ctrfs"), "pull", str(dev), f"{proxy.host}/tx/big:1", "--tls-verify=false",
               "--name", "got:1"]
        killed_while_stalled(proxy, cmd)
        assert image_names(dev) == before
        fsck_clean(dev)
        kept = list(own_tmpdir.glob("ctrfs-pull-*/*"))
        assert len(kept) == len(objects) - 1, kept
        proxy.clear()
        res = assert_ok(pull(dev, registry, "tx/big:1", "--name", "got:1", host=proxy.host))
        assert f"({len(objects) - 1} kept from an earlier try)" in res.out, res.out
        gets = proxy.blob_gets()
        assert [gets[d] for d in objects] == [0] * (len(objects) - 1) + [1]
    assert_same_tree(describe_image(dev, "got:1"), describe_dir(tree))
    assert list(own_tmpdir.iterdir()) == []
    fsck_clean(dev)


def test_interrupted_transfer_push_sends_only_the_rest(registry, big_image):
    """The registry fails (503 through every retry) when the push reaches the last object
    blob: no tag; pushing again sends only that blob, the index and the config."""
    img, _tree = big_image
    assert_ok(push(img, "big:1", registry, "tx/first:1", "--format", "ctrfs"))
    objects = _objects(registry, "tx/first", "1")     # the same blobs: packing is deterministic
    with FaultProxy(registry.host) as proxy:
        proxy.fault(f"/blobs/{objects[-1]}", "unavailable", times=100)
        res = push(img, "big:1", registry, "tx/big:1", "--format", "ctrfs", host=proxy.host)
        assert_error(res, 3, prog="ctrfs")
        assert proxy.count("PUT", "/blobs/uploads/") == len(objects) - 1
        assert proxy.count("PUT", "/manifests/") == 0
        proxy.clear()
        res = assert_ok(push(img, "big:1", registry, "tx/big:1", "--format", "ctrfs", host=proxy.host))
        assert f"3 blobs sent, {len(objects) - 1} skipped" in res.out, res.out
        assert proxy.count("PUT", "/blobs/uploads/") == 3
    assert _objects(registry, "tx/big", "1") == objects


def test_progress_on_a_terminal(big_image, tmp_path):
    """Objects and bytes, sent, fetched and skipped, on a terminal; nothing with -q."""
    img, _tree = big_image
    store = tmp_path / "store"
    said = on_tty("push", img, "big:1", f"dir:{store}:v1")
    assert "blobs sent, 0 already there, of" in said and "MiB sent" in said, said
    said = on_tty("push", img, "big:1", f"dir:{store}:v2")
    assert "0 blobs sent" in said and "already there" in said, said
    dev = mkfs(tmp_path / "dev.img")
    said = on_tty("pull", dev, f"dir:{store}:v1", "--name", "a")
    assert "files fetched, 0 on the device" in said and "of file data" in said, said
    assert on_tty("pull", "-q", dev, f"dir:{store}:v1", "--name", "b") == ""


@pytest.fixture
def rebuilt(tmp_path):
    """Image old (300 small random files) and new (old with 3 of them changed), each on its
    own device; new pushed alone, so its pack holds the 297 contents old has too."""
    old = {f"d/f{i:03}": os.urandom(8 << 10) for i in range(300)}
    new = dict(old, **{f"d/f{i:03}": os.urandom(8 << 10) for i in (50, 150, 250)})
    return _tar_image(tmp_path, "old", old), _tar_image(tmp_path, "new", new)


def test_pull_fetches_only_the_frames_it_lacks(registry, rebuilt):
    (old_dev, _old_tree), (new_dev, new_tree) = rebuilt
    assert_ok(push(new_dev, "new:1", registry, "tx/new:1", "--format", "ctrfs"))
    with FaultProxy(registry.host) as proxy:
        res = assert_ok(pull(old_dev, registry, "tx/new:1", "--name", "got:1", host=proxy.host))
        assert "3 fetched, 297 already on the device; 3 ranges of 1 blobs" in res.out, res.out
        ranged = [r for r in proxy.requests if r[2] == 206]
        assert len(ranged) == 3 and all(r[3] < 9 << 10 for r in ranged), ranged
        assert proxy.bytes_sent() < 64 << 10
    assert_same_tree(describe_image(old_dev, "got:1"), describe_dir(new_tree))
    fsck_clean(old_dev)


def test_a_range_that_lies_is_refused_then_fetched_again(registry, rebuilt):
    """A corrupted ranged answer: refused (exit 2), nothing stored; the range is not kept,
    so the next pull fetches it again and succeeds."""
    (old_dev, _old_tree), (new_dev, new_tree) = rebuilt
    assert_ok(push(new_dev, "new:1", registry, "tx/new:1", "--format", "ctrfs"))
    objects = _objects(registry, "tx/new", "1")
    before = image_names(old_dev)
    with FaultProxy(registry.host) as proxy:
        proxy.fault(objects[0], "corrupt")
        res = pull(old_dev, registry, "tx/new:1", "--name", "got:1", host=proxy.host)
        assert_error(res, 2, "does not match", prog="ctrfs")
        assert image_names(old_dev) == before
        fsck_clean(old_dev)
        res = assert_ok(pull(old_dev, registry, "tx/new:1", "--name", "got:1", host=proxy.host))
        assert "(2 kept from an earlier try)" in res.out, res.out
    assert_same_tree(describe_image(old_dev, "got:1"), describe_dir(new_tree))
