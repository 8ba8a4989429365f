"""`ctrfs pull` from a real registry: images skopeo pushed (OCI and Docker schema 2, gzip and
zstd layers) give the tree `umoci unpack` gives; a layer stack already on the device is
not downloaded (counted by a proxy in front of the registry)."""
import hashlib
import json

from ocitree import assert_same_tree, describe_dir, describe_image, fsck_clean, image_names, mkfs, on_tty, sh
from regrun import pull, skopeo_push
from toolrun import assert_error, assert_ok

from ctrfs.oci.export import MT_INDEX, host_arch
from ctrfs.testing.proxy import FaultProxy


def test_pull_gives_umoci_unpack_tree(registry, layout, tmp_path):
    skopeo_push(layout.dir, "app", registry, "test/app:1")
    img = mkfs(tmp_path / "fs.img")
    res = assert_ok(pull(img, registry, "test/app:1"))
    assert "2 layers (2 fetched, 0 already on the device)" in res.out
    name = f"{registry.host}/test/app:1"
    assert name.encode() in image_names(img)
    assert_same_tree(describe_image(img, name), describe_dir(layout.unpack("app")))
    fsck_clean(img)


def test_pull_docker_schema2_and_zstd(registry, layout, tmp_path):
    sh("skopeo", "copy", "-q", "--dest-tls-verify=false", "--format", "v2s2",
       f"oci:{layout.dir}:app", f"docker://{registry.host}/docker/app:v2")
    (tmp_path / "z").mkdir()
    sh("skopeo", "copy", "-q", "--dest-compress", "--dest-compress-format", "zstd",
       f"oci:{layout.dir}:app", f"oci:{tmp_path}/z/oci:app")
    skopeo_push(tmp_path / "z/oci", "app", registry, "zstd/app:z")
    mt = json.loads(sh("skopeo", "inspect", "--raw", "--tls-verify=false",
                       f"docker://{registry.host}/zstd/app:z"))["layers"][0]["mediaType"]
    assert mt.endswith("+zstd")
    img = mkfs(tmp_path / "fs.img")
    want = describe_dir(layout.unpack("app"))
    assert_ok(pull(img, registry, "docker/app:v2", "--name", "d2"))
    assert_ok(pull(img, registry, "zstd/app:z", "--name", "zs:1"))
    assert_same_tree(describe_image(img, "d2:v2"), want)
    assert_same_tree(describe_image(img, "zs:1"), want)
    fsck_clean(img)


def test_layers_on_the_device_are_not_downloaded(registry, layout, tmp_path):
    skopeo_push(layout.dir, "base", registry, "test/base:1")
    skopeo_push(layout.dir, "app", registry, "test/app:1")
    img = mkfs(tmp_path / "fs.img")
    with FaultProxy(registry.host) as proxy:
        assert_ok(pull(img, registry, "test/base:1", host=proxy.host))
        first = proxy.blob_gets()
        assert len(first) == 2                         # the layer and the config
        proxy.clear()
        res = assert_ok(pull(img, registry, "test/app:1", host=proxy.host))
        second = proxy.blob_gets()
    assert "(1 fetched, 1 already on the device)" in res.out
    assert len(second) == 2 and not set(second) & set(first)   # only app's top layer and config
    manifest = json.loads(sh("skopeo", "inspect", "--raw", "--tls-verify=false",
                             f"docker://{registry.host}/test/app:1"))
    assert manifest["layers"][1]["digest"] in second
    assert manifest["layers"][0]["digest"] not in second
    assert_same_tree(describe_image(img, f"{proxy.host}/test/app:1"), describe_dir(layout.unpack("app")))
    fsck_clean(img)


def test_progress_on_a_terminal_only(registry, layout, tmp_path):
    skopeo_push(layout.dir, "app", registry, "test/app:1")
    img = mkfs(tmp_path / "fs.img")
    said = on_tty("pull", img, f"{registry.host}/test/app:1", "--tls-verify=false", "--name", "p:1")
    assert f"\r{registry.host}/test/app:1: layer 1/2" in said and "layer 2/2" in said
    said = on_tty("push", img, "p:1", f"{registry.host}/back/p:1", "--tls-verify=false")
    assert f"\r{registry.host}/back/p:1: layer 1/2" in said and "sent" in said
    piped = assert_ok(pull(img, registry, "test/app:1", "--name", "q:1"))
    assert "\r" not in piped.err and piped.err == ""


def test_multi_arch_index_gives_this_machines_image(registry, layout, tmp_path):
    """An OCI index with an arm64-or-other image first and this machine's second."""
    multi = tmp_path / "multi"
    sh("cp", "-a", layout.dir, multi)
    index = json.loads((multi / "index.json").read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    other = "s390x" if host_arch() != "s390x" else "arm64"
    entries = [dict(by_tag["base"], platform={"os": "linux", "architecture": other}),
               dict(by_tag["app"], platform={"os": "linux", "architecture": host_arch()})]
    for e in entries:
        e.pop("annotations")
    nested = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}).encode()
    digest = hashlib.sha256(nested).hexdigest()
    (multi / "blobs/sha256" / digest).write_bytes(nested)
    index["manifests"].append({"mediaType": MT_INDEX, "digest": f"sha256:{digest}", "size": len(nested),
                               "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    (multi / "index.json").write_text(json.dumps(index))
    sh("skopeo", "copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{multi}:multi",
       f"docker://{registry.host}/multi/app:1")
    img = mkfs(tmp_path / "fs.img")
    assert_ok(pull(img, registry, "multi/app:1", "--name", "m:1"))
    assert_same_tree(describe_image(img, "m:1"), describe_dir(layout.unpack("app")))


def test_pull_by_digest(registry, layout, tmp_path):
    skopeo_push(layout.dir, "app", registry, "test/app:1")
    digest = sh("skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                f"docker://{registry.host}/test/app:1").strip()
    img = mkfs(tmp_path / "fs.img")
    assert_ok(pull(img, registry, f"test/app@{digest}"))
    name = f"{registry.host}/test/app:sha256-{digest.split(':')[1]}"
    assert_same_tree(describe_image(img, name), describe_dir(layout.unpack("app")))
    res = pull(img, registry, "test/app@sha256:" + "0" * 64)
    assert_error(res, 3, "MANIFEST_UNKNOWN", prog="ctrfs")
    assert_error(pull(img, registry, "test/app:1@sha256:00"), 16, "digest", prog="ctrfs")
