"""Fixtures of the registry tests: a real docker-registry (distribution) per test, plain
HTTP or with htpasswd basic auth and TLS (a CA made by the test), stopped in finally; a
two-layer busybox image built by umoci, once per module."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "oci"))
from ocitree import Layout  # noqa: E402

from ctrfs.testing import registry as reg  # noqa: E402
from ctrfs.testing.tokenserver import TokenServer  # noqa: E402

USER, PASSWORD = "ctrfs", "s3cret pass"


@pytest.fixture(autouse=True)
def own_tmpdir(tmp_path, monkeypatch):
    """ctrfs pull keeps a failed transfer's blobs in $TMPDIR: the test's own, not /var/tmp."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


@pytest.fixture
def registry(tmp_path):
    with reg.running(tmp_path / "registry") as r:
        yield r


@pytest.fixture
def secure_registry(tmp_path):
    with reg.running(tmp_path / "registry-tls", tls=True, user=USER, password=PASSWORD) as r:
        yield r


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """umoci image 'base' (busybox tree) and 'app' (base + a layer with a whiteout, a new
    file and a change)."""
    root = tmp_path_factory.mktemp("oci")
    lay = Layout(root)
    lay.busybox("base")
    b = lay.bundle("base")
    (b / "rootfs/etc/hello-link.txt").unlink()
    (b / "rootfs/etc/added").write_text("layer two\n")
    (b / "rootfs/etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1:1::/:/bin/sh\n")
    lay.repack("base", b, "app")
    return lay


@pytest.fixture
def token_registry(tmp_path):
    """A plain-HTTP registry that wants bearer tokens from a token server (basic credentials
    USER/PASSWORD there): (registry, token server)."""
    with TokenServer(tmp_path / "tokens", USER, PASSWORD) as ts:
        with reg.running(tmp_path / "registry-token", auth=ts.registry_auth()) as r:
            yield r, ts
