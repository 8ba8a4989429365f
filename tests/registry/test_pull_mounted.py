"""`ctrfs pull` on a mounted device: the device's daemon runs it with the caller's
credentials (REGISTRY_AUTH_FILE set only in the shell that pulls), while a container's tree
stays mounted and writable; a refused pull stores nothing; the pulled image is the tree
umoci unpacks, through a read-only view and after the daemon is gone."""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))
from daemonrun import cleanup, mount, umount  # noqa: E402
from fusemount import fsck, wait_unlocked  # noqa: E402
from ocitree import assert_same_tree, ctrfs, describe_dir, describe_image, image_names, mkfs  # noqa: E402
from regrun import skopeo_push  # noqa: E402
from toolrun import assert_error, assert_ok  # noqa: E402

from ctrfs.testing.registry import auth_file  # noqa: E402


def test_pull_through_the_daemon(secure_registry, layout, tmp_path, monkeypatch):
    r = secure_registry
    skopeo_push(layout.dir, "app", r, "sec/app:1")
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))          # the daemon finds no credentials
    img = mkfs(tmp_path / "fs.img", "128M")
    want = describe_dir(layout.unpack("app"))
    authfile = auth_file(tmp_path / "auth.json", r.host, r.user, r.password)
    shell = dict(os.environ, REGISTRY_AUTH_FILE=str(authfile))
    try:
        box = mount(img, tmp_path / "box")
        (box / "work").write_text("mine\n")
        before = assert_ok(ctrfs("images", img)).out                  # the daemon answers
        res = ctrfs("pull", img, f"{r.host}/sec/app:1", "--cert-dir", r.cert_dir, "--name", "x:1",
                    env=dict(shell, REGISTRY_AUTH_FILE=str(tmp_path / "none.json")))
        assert_error(res, 3, "credentials needed", r.host, prog="ctrfs")
        assert assert_ok(ctrfs("images", img)).out == before             # nothing stored
        res = assert_ok(ctrfs("pull", img, f"{r.host}/sec/app:1", "--cert-dir", r.cert_dir,
                              "--name", "got:1", env=shell))
        assert "2 layers (2 fetched, 0 already on the device)" in res.out
        assert (box / "work").read_text() == "mine\n"
        (box / "more").write_text("after\n")
        view = mount(img, tmp_path / "view", "image=got:1", "ro")
        assert_same_tree(describe_dir(view), want)
        umount(view)
        umount(box)
        wait_unlocked(img)
    finally:
        cleanup(tmp_path)
    fsck(img)
    assert b"got:1" in image_names(img) and b"x:1" not in image_names(img)
    assert_same_tree(describe_image(img, "got:1"), want)
    box = mount(img, tmp_path / "box")
    try:
        assert (box / "work").read_text() == "mine\n" and (box / "more").read_text() == "after\n"
        umount(box)
    finally:
        cleanup(tmp_path)
