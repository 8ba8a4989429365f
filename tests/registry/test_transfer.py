"""The file-level transfer (`--format ctrfs`, spec/TRANSFER.md) through a real registry and
a `dir:` store: exact trees, contents the remote or the device already has do not travel
(counted), tampered blobs are refused with nothing stored, the registry's garbage
collector keeps every blob a transfer image needs."""
import json
import os

import pytest
from ocitree import assert_same_tree, ctrfs, describe_dir, describe_image, fsck_clean, image_names, mkfs
from regrun import pull, push
from toolrun import assert_error, assert_ok

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
