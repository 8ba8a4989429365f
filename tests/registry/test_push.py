"""`ctrfs push --format oci` to a real registry: `skopeo copy` back and `umoci unpack` give
the image's tree, `podman pull` accepts it, blobs the registry has are not sent again
(counted by a proxy), --mount-from links blobs from another repository, and `docker-registry garbage-collect` keeps everything the image needs."""
import json
import os
import shutil
import tempfile

from ocitree import Layout, assert_same_tree, ctrfs, describe_dir, mkfs, sh
from regrun import push, skopeo_pull
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
        assert proxy.count("PUT", "/blobs/uploads/") == 0 and proxy.count("HEAD", "/blobs/") == 3
        assert proxy.count("PUT", "/manifests/2") == 1
    assert "0 blobs sent, 3 already there" in res.out


def test_cross_repository_mount(registry, layout, tmp_path):
    img = imported(layout, tmp_path)
    assert_ok(push(img, "app:1", registry, "first/app:1"))
    with FaultProxy(registry.host) as proxy:
        res = assert_ok(push(img, "app:1", registry, "second/app:1", "--mount-from", "first/app",
                             host=proxy.host))
        assert proxy.count("POST", "/v2/second/app/blobs/uploads/") == 3
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
