"""`ctrfs push --format oci` to a real registry: `skopeo copy` back and `umoci unpack` give
the image's tree, `podman pull` accepts it, blobs the registry has are not sent again
(counted by a proxy), --mount-from links blobs from another repository, and `docker-registry garbage-collect` keeps everything the image needs."""
import json
import os
import shutil
import tempfile

from ocitree import Layout, assert_same_tree, ctrfs, describe_dir, fsck_clean, mkfs, sh
from regrun import push, skopeo_pull, skopeo_push
from toolrun import assert_ok

from ctrfs.testing.proxy import FaultProxy


def imported(layout, tmp_path):
    img = mkfs(tmp_path / "fs.img")
    assert_ok(ctrfs("import", img, f"oci:{layout.dir}:app", "--name", "app:1", "-q"))
    return img


def back_through_skopeo(registry, repo, tmp_path):
    back = Layout(tmp_path / "back")
    skopeo_pull(registry, repo, back.dir, "x")
    return back


def test_push_then_skopeo_copy_back(registry, layout, tmp_path):
    img = imported(layout, tmp_path)
    res = assert_ok(push(img, "app:1", registry, "pushed/app:1", "--format", "oci"))
    assert "2 blobs sent" not in res.out and "3 blobs sent" in res.out     # 2 layers + config
    back = back_through_skopeo(registry, "pushed/app:1", tmp_path)
    manifest = json.loads(sh("skopeo", "inspect", "--raw", "--tls-verify=false",
                             f"docker://{registry.host}/pushed/app:1"))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert len(manifest["layers"]) == 2
    assert_same_tree(describe_dir(back.unpack("x")), describe_dir(layout.unpack("app")))


def test_push_skips_blobs_the_registry_has(registry, layout, tmp_path):
    img = imported(layout, tmp_path)
    with FaultProxy(registry.host) as proxy:
        assert_ok(push(img, "app:1", registry, "r/app:1", host=proxy.host))
        assert proxy.count("PUT", "/blobs/uploads/") == 3
        proxy.clear()
        res = assert_ok(push(img, "app:1", registry, "r/app:2", host=proxy.host))
        # each layer's own (umoci) blob is offered first, then the one written
        assert proxy.count("PUT", "/blobs/uploads/") == 0 and proxy.count("HEAD", "/blobs/") == 2 + 3
        assert proxy.count("PUT", "/manifests/2") == 1
    assert "0 blobs sent, 3 already there" in res.out


def test_cross_repository_mount(registry, layout, tmp_path):
    img = imported(layout, tmp_path)
    assert_ok(push(img, "app:1", registry, "first/app:1"))
    with FaultProxy(registry.host) as proxy:
        res = assert_ok(push(img, "app:1", registry, "second/app:1", "--mount-from", "first/app",
                             host=proxy.host))
        # the layers' own blobs are not in first/app (its push wrote them again): 2 refused mounts
        assert proxy.count("POST", "/v2/second/app/blobs/uploads/") == 2 + 3
        assert proxy.count("PUT", "/blobs/uploads/") == 0
    assert "0 blobs sent, 0 already there, 3 mounted" in res.out
    back = back_through_skopeo(registry, "second/app:1", tmp_path)
    assert_same_tree(describe_dir(back.unpack("x")), describe_dir(layout.unpack("app")))


def test_garbage_collect_keeps_pushed_image(registry, layout, tmp_path):
    img = imported(layout, tmp_path)
    assert_ok(push(img, "app:1", registry, "gc/app:1"))
    registry.garbage_collect()
    back = back_through_skopeo(registry, "gc/app:1", tmp_path)
    assert_same_tree(describe_dir(back.unpack("x")), describe_dir(layout.unpack("app")))


def test_podman_pulls_a_pushed_image(registry, layout, tmp_path):
    img = imported(layout, tmp_path)
    assert_ok(push(img, "app:1", registry, "podman/app:1"))
    run = tempfile.mkdtemp(prefix="ctrfs-podman-")      # podman wants a runroot under 50 characters
    base = ["podman", "--root", tmp_path / "podman", "--runroot", run, "--storage-driver", "vfs"]
    env = dict(os.environ, CONTAINERS_CONF="/dev/null")
    try:
        sh(*base, "pull", "-q", "--tls-verify=false", f"{registry.host}/podman/app:1", env=env)
        out = sh(*base, "image", "inspect", f"{registry.host}/podman/app:1", env=env)
        assert len(json.loads(out)[0]["RootFS"]["Layers"]) == 2
    finally:
        sh(*base, "rmi", "-a", "-f", env=env)
        shutil.rmtree(run)


def _manifest(registry, repo):
    return json.loads(sh("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/{repo}"))


def test_push_back_takes_nothing_new(registry, layout, tmp_path):
    """An image that came from a registry goes back as the blobs it came in: its layers'
    own digests and its config's (the image ID), nothing uploaded, as containers/image does."""
    skopeo_push(layout.dir, "app", registry, "src/app:1")
    want = _manifest(registry, "src/app:1")
    img = mkfs(tmp_path / "fs.img")
    assert_ok(ctrfs("pull", img, f"docker://{registry.host}/src/app:1", "--tls-verify=false",
                    "--name", "app:1", "-q"))
    with FaultProxy(registry.host) as proxy:
        res = assert_ok(push(img, "app:1", registry, "src/app:2", host=proxy.host))
        assert proxy.count("PUT", "/blobs/uploads/") == 0 and proxy.count("POST", "/blobs/uploads/") == 0
    assert "0 blobs sent, 3 already there" in res.out
    got = _manifest(registry, "src/app:2")
    assert [d["digest"] for d in got["layers"]] == [d["digest"] for d in want["layers"]]
    assert got["config"]["digest"] == want["config"]["digest"]

    # another repository of the registry: mounted from the one it came from, nothing sent
    with FaultProxy(registry.host) as proxy:
        res = assert_ok(push(img, "app:1", registry, "other/app:1", "--mount-from", "src/app",
                             host=proxy.host))
        assert proxy.count("PUT", "/blobs/uploads/") == 0
    assert "0 blobs sent, 0 already there, 3 mounted" in res.out
    fsck_clean(img)
    back = back_through_skopeo(registry, "other/app:1", tmp_path)
    assert_same_tree(describe_dir(back.unpack("x")), describe_dir(layout.unpack("app")))

    # uncompressed layers are asked for: the gzip blobs are not what goes, the layers are written
    res = assert_ok(push(img, "app:1", registry, "plain/app:1", "--compress", "none"))
    assert "3 blobs sent" in res.out
    assert [d["mediaType"] for d in _manifest(registry, "plain/app:1")["layers"]] == \
        ["application/vnd.oci.image.layer.v1.tar"] * 2


def test_push_of_an_image_not_from_a_manifest_writes_its_layers(registry, tmp_path):
    """A layer imported from a plain tar keeps no source blob: the push writes it."""
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("data\n")
    tar = tmp_path / "l.tar"
    sh("tar", "-C", str(tree), "-cf", str(tar), ".")
    img = mkfs(tmp_path / "fs.img")
    assert_ok(ctrfs("import", img, str(tar), "--name", "t:1", "-q"))
    res = assert_ok(push(img, "t:1", registry, "t/t:1"))
    assert "2 blobs sent" in res.out
