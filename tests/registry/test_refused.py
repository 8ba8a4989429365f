"""Bad registries and bad answers: unreachable, manifest unknown, and a proxy in front of
the real registry that corrupts or cuts a blob, serves a malformed, oversized or
substituted manifest, answers 503, or drops the connection.  Each is one line and a
documented exit code (2 bad content, 3 registry refused or unreachable), nothing appears
on the device, fsck is clean; a dropped connection is picked up where it stopped, and a
pull that failed resumes without fetching again the layers it had verified."""
import json
import socket

import pytest
from ocitree import assert_same_tree, ctrfs, describe_dir, describe_image, fsck_clean, image_names, mkfs, sh
from regrun import killed_while_stalled, pull, push, skopeo_push
from toolrun import BIN, assert_error, assert_ok

from ctrfs.testing.proxy import FaultProxy

EXIT_BAD_IMAGE, EXIT_REGISTRY = 2, 3


@pytest.fixture
def served(registry, layout):
    skopeo_push(layout.dir, "app", registry, "test/app:1")
    manifest = json.loads(sh("skopeo", "inspect", "--raw", "--tls-verify=false",
                             f"docker://{registry.host}/test/app:1"))
    with FaultProxy(registry.host) as proxy:
        yield registry, proxy, manifest


def no_image_stored(img, before):
    after = image_names(img)
    assert {n for n in after if not n.startswith(b"@layer/")} == \
        {n for n in before if not n.startswith(b"@layer/")}, after
    fsck_clean(img)


def pull_resumes(img, registry, proxy, layout, bottom, top):
    """Pulling again fetches only the top layer, and gives the whole image."""
    proxy.clear()
    res = assert_ok(pull(img, registry, "test/app:1", host=proxy.host))
    assert "(1 fetched, 1 already on the device)" in res.out
    assert proxy.blob_gets()[bottom] == 0 and proxy.blob_gets()[top] == 1
    assert_same_tree(describe_image(img, f"{proxy.host}/test/app:1"), describe_dir(layout.unpack("app")))
    fsck_clean(img)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_and_unknown(registry, tmp_path):
    img = mkfs(tmp_path / "fs.img")
    before = image_names(img)
    res = ctrfs("pull", img, f"127.0.0.1:{free_port()}/x/y:1", "--tls-verify=false")
    assert_error(res, EXIT_REGISTRY, "127.0.0.1", prog="ctrfs")
    res = ctrfs("pull", img, f"{registry.host}/no/such:1", "--tls-verify=false")
    assert_error(res, EXIT_REGISTRY, "MANIFEST_UNKNOWN", prog="ctrfs")
    res = ctrfs("pull", img, "busybox:1")
    assert_error(res, 16, "name the registry", prog="ctrfs")
    res = ctrfs("push", img, "nothing:1", f"{registry.host}/x/y:1", "--tls-verify=false")
    assert_error(res, 16, "no image", prog="ctrfs")
    no_image_stored(img, before)


@pytest.mark.parametrize("how,code,fragment", [
    ("corrupt", EXIT_BAD_IMAGE, "digest mismatch"),
    ("truncate", EXIT_BAD_IMAGE, "its descriptor says"),
])
def test_lying_blob_refused(served, tmp_path, how, code, fragment):
    registry, proxy, manifest = served
    img = mkfs(tmp_path / "fs.img")
    before = image_names(img)
    proxy.fault(manifest["layers"][0]["digest"], how, times=100)
    res = pull(img, registry, "test/app:1", host=proxy.host)
    assert_error(res, code, fragment, prog="ctrfs")
    no_image_stored(img, before)
    assert not [n for n in image_names(img) if n.startswith(b"@layer/")]


@pytest.mark.parametrize("body,fragment", [
    (b"{not json", "not JSON"),
    (b'{"schemaVersion": 2, "layers": "x", "config": {}}', "malformed descriptor"),
    (b" " * (5 << 20), "allowed"),
])
def test_bad_manifest_refused(served, tmp_path, body, fragment):
    registry, proxy, _manifest = served
    img = mkfs(tmp_path / "fs.img")
    before = image_names(img)
    proxy.fault("/manifests/", "replace", times=100, body=body)
    res = pull(img, registry, "test/app:1", host=proxy.host)
    assert_error(res, EXIT_BAD_IMAGE, fragment, prog="ctrfs")
    no_image_stored(img, before)


def test_substituted_manifest_refused(served, tmp_path):
    """A manifest that is not the one the registry's Docker-Content-Digest names."""
    registry, proxy, _manifest = served
    img = mkfs(tmp_path / "fs.img")
    before = image_names(img)
    proxy.fault("/manifests/", "corrupt", times=100)
    res = pull(img, registry, "test/app:1", host=proxy.host)
    assert_error(res, EXIT_BAD_IMAGE, "digest mismatch", prog="ctrfs")
    no_image_stored(img, before)


def test_dropped_connection_resumes_with_range(served, layout, tmp_path):
    registry, proxy, manifest = served
    img = mkfs(tmp_path / "fs.img")
    big = max(manifest["layers"], key=lambda d: d["size"])["digest"]
    proxy.fault(big, "drop", times=2)
    proxy.fault("/manifests/", "unavailable", times=2)       # 503 twice: retried with backoff
    assert_ok(pull(img, registry, "test/app:1", host=proxy.host))
    assert proxy.blob_gets()[big] == 3                          # the first GET and two ranged ones
    assert proxy.bytes_sent() < sum(d["size"] for d in manifest["layers"]) * 1.5
    assert_same_tree(describe_image(img, f"{proxy.host}/test/app:1"), describe_dir(layout.unpack("app")))
    fsck_clean(img)


def test_failed_pull_resumes_without_refetching_finished_layers(served, layout, tmp_path):
    registry, proxy, manifest = served
    img = mkfs(tmp_path / "fs.img")
    before = image_names(img)
    bottom, top = (d["digest"] for d in manifest["layers"])
    proxy.fault(top, "drop", times=100)                         # the connection keeps dying
    res = pull(img, registry, "test/app:1", host=proxy.host)
    assert_error(res, EXIT_REGISTRY, "connection lost", prog="ctrfs")
    no_image_stored(img, before)
    assert len([n for n in image_names(img) if n.startswith(b"@layer/")]) == 1   # layer 1, verified
    assert proxy.blob_gets()[bottom] == 1
    pull_resumes(img, registry, proxy, layout, bottom, top)


def test_killed_pull_leaves_no_image_and_resumes(served, layout, tmp_path):
    """kill -9 while the top layer downloads: the bottom layer is committed, nothing else
    (no image, no scratch tree); fsck is clean; the next pull fetches only the top layer;
    `ctrfs gc` would have removed the lone layer."""
    registry, proxy, manifest = served
    img = mkfs(tmp_path / "fs.img")
    bottom, top = (d["digest"] for d in manifest["layers"])
    proxy.fault(top, "stall")
    cmd = [str(BIN / "ctrfs"), "pull", str(img), f"{proxy.host}/test/app:1", "--tls-verify=false"]
    killed_while_stalled(proxy, cmd)
    names = image_names(img)
    assert [n for n in names if not n.startswith(b"@layer/")] == [b"@default"], names
    assert len(names) == 2
    fsck_clean(img)
    spare = tmp_path / "spare.img"
    sh("cp", "--sparse=always", img, spare)
    assert "1 layer" in assert_ok(ctrfs("gc", spare)).out
    assert image_names(spare) == {b"@default": image_names(img)[b"@default"]}
    pull_resumes(img, registry, proxy, layout, bottom, top)


@pytest.mark.parametrize("where,sent", [("/blobs/uploads/", 3), ("/manifests/", 0)])
def test_interrupted_push_leaves_no_tag_and_resumes(served, layout, tmp_path, where, sent):
    """Uploads or the manifest refused (503 through every retry): no tag; pushing again
    sends only the blobs that did not arrive."""
    registry, proxy, _manifest = served
    img = mkfs(tmp_path / "fs.img")
    assert_ok(ctrfs("import", img, f"oci:{layout.dir}:app", "--name", "app:1", "-q"))
    proxy.fault(where, "unavailable", times=100)
    assert_error(push(img, "app:1", registry, "resume/app:1", host=proxy.host), EXIT_REGISTRY, prog="ctrfs")
    assert "NAME_UNKNOWN" in sh("curl", "-s", f"http://{registry.host}/v2/resume/app/tags/list")
    proxy.clear()
    res = assert_ok(push(img, "app:1", registry, "resume/app:1", host=proxy.host))
    assert f"{sent} blob{'s' * (sent != 1)} sent, {3 - sent} already there" in res.out
    assert proxy.count("PUT", "/blobs/uploads/") == sent
