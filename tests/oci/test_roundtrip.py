"""Import then export: an image umoci built (two layers, a runtime config) goes in, comes
out as an OCI layout with the same layers (diff_ids) and the same runtime config, and
`umoci unpack` of the export is the tree `umoci unpack` of the original gives."""
import json

from ocitree import Layout, assert_same_tree, busybox_tree, ctrfs, describe_dir, fsck_clean, mkfs, on_tty, sh
from toolrun import assert_ok

CONFIG = ["--config.env=APP=demo", "--config.cmd=/bin/sh", "--config.entrypoint=/bin/busybox",
          "--config.user=1000:1000", "--config.workingdir=/root", "--config.label=org.example=ctrfs"]


def manifest_and_config(layout_dir, tag):
    index = json.loads((layout_dir / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    blob = lambda d: json.loads((layout_dir / "blobs" / "sha256" / d.split(":")[1]).read_text())  # noqa: E731
    manifest = blob(desc["digest"])
    return manifest, blob(manifest["config"]["digest"])


def test_import_export_round_trip(tmp_path):
    src = Layout(tmp_path / "src")
    src.busybox("base")
    b = src.bundle("base")
    (b / "rootfs" / "etc" / "passwd").unlink()                 # a whiteout in layer 2
    (b / "rootfs" / "etc" / "added").write_text("layer two")
    src.repack("base", b, new_tag="app")
    sh("umoci", "config", "--image", f"{src.dir}:app", *CONFIG)
    img = mkfs(tmp_path / "s.img")
    assert_ok(ctrfs("import", img, f"oci:{src.dir}:app", "--name", "app:1", "-q"))
    out = tmp_path / "out"
    assert_ok(ctrfs("export", "--format", "oci", img, "app:1", out, "-q"))
    m_in, c_in = manifest_and_config(src.dir, "app")
    m_out, c_out = manifest_and_config(out, "1")
    assert len(m_out["layers"]) == len(m_in["layers"]) == 2
    assert c_out["config"] == c_in["config"]                     # env, cmd, entrypoint, user, ...
    assert c_out["config"]["Env"][-1] == "APP=demo" and c_out["config"]["User"] == "1000:1000"
    # unchanged layers come back byte for byte (from their recipes): the same diff_ids
    assert c_out["rootfs"]["diff_ids"] == c_in["rootfs"]["diff_ids"]
    # and so the config is the one it came with, byte for byte: the same image ID
    assert m_out["config"]["digest"] == m_in["config"]["digest"]
    want = describe_dir(src.unpack("app"))
    got = describe_dir(_unpack(out, "1", tmp_path))
    assert_same_tree(got, want, "umoci unpack of the export vs of the original")
    fsck_clean(img)


def _unpack(layout_dir, tag, tmp_path):
    bundle = tmp_path / "unpacked"
    sh("umoci", "unpack", "--image", f"{layout_dir}:{tag}", bundle)
    return bundle / "rootfs"


def test_progress_on_a_terminal_only(tmp_path):
    """Import and export draw a progress line when stderr is a terminal, never otherwise."""
    src = Layout(tmp_path / "src")
    src.busybox("base")
    img = mkfs(tmp_path / "s.img")

    said = on_tty("import", img, f"oci:{src.dir}:base", "--name", "b:1")
    assert "\rb:1: layer 1/1" in said and "of file data" in said
    said = on_tty("export", "--format", "oci", img, "b:1", tmp_path / "out")
    assert "\rb:1: layer 1/" in said and "of layers written" in said
    quiet = on_tty("export", "--format", "oci", "-q", img, "b:1", tmp_path / "out2")
    assert quiet == ""
    piped = assert_ok(ctrfs("export", "--format", "oci", img, "b:1", tmp_path / "out3"))
    assert "\r" not in piped.err and piped.err.startswith("exported b:1")


def test_big_config_round_trips(tmp_path):
    """A config of many kilobytes (long label lists are common) is stored in pieces that
    each fit a leaf item, and exported as it was."""
    src = Layout(tmp_path / "src")
    src.new("big")
    b = src.bundle("big")
    busybox_tree(b / "rootfs")
    src.repack("big", b)
    labels = [f"--config.label=org.example.l{i}={'v' * 200}" for i in range(40)]
    sh("umoci", "config", "--image", f"{src.dir}:big", *labels)
    _m, c_in = manifest_and_config(src.dir, "big")
    assert len(json.dumps(c_in)) > 8000
    img = mkfs(tmp_path / "s.img")
    assert_ok(ctrfs("import", img, f"oci:{src.dir}:big", "--name", "big:1", "-q"))
    out = tmp_path / "out"
    assert_ok(ctrfs("export", "--format", "oci", img, "big:1", out, "-q"))
    _m, c_out = manifest_and_config(out, "1")
    assert c_out["config"]["Labels"] == c_in["config"]["Labels"]
    fsck_clean(img)
