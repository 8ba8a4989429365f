"""A malformed OCI layout (index, manifest, config) is one line and exit 2, nothing stored."""
import hashlib
import json

import pytest
from ocitree import ctrfs, fsck_clean, image_names, mkfs
from toolrun import assert_error

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def manifest_with(layout, config, layers):
    cd = dict(blob(layout, json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    m = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": cd, "layers": layers}).encode()
    return [dict(blob(layout, m), mediaType=MANIFEST)]


CASES = {
    "index is a list": lambda L: [],
    "manifests not a list": lambda L: {"manifests": 5},
    "digest not a string": lambda L: {"manifests": [{"digest": 5, "size": 1}]},
    "short digest": lambda L: {"manifests": [{"digest": "sha256:abc", "size": 3, "mediaType": MANIFEST}]},
    "negative size": lambda L: {"manifests": [{"digest": "sha256:" + "a" * 64, "size": -1}]},
    "missing blob": lambda L: {"manifests": [{"digest": "sha256:" + "b" * 64, "size": 10, "mediaType": MANIFEST}]},
    "config without rootfs": lambda L: {"manifests": manifest_with(L, {"architecture": "amd64"}, [])},
    "diff_ids and layers disagree": lambda L: {"manifests": manifest_with(
        L, {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "c" * 64]}}, [])},
    "size that lies": lambda L: {"manifests": [dict(blob(L, b"{}"), size=99, mediaType=MANIFEST)]},
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_layout_refused(tmp_path, case):
    layout = tmp_path / "oci"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps(CASES[case](layout)))
    img = mkfs(tmp_path / "s.img")
    before = image_names(img)
    assert_error(ctrfs("import", img, f"oci:{layout}", "--name", "x:1"), 2, prog="ctrfs")
    assert image_names(img) == before
    fsck_clean(img)
