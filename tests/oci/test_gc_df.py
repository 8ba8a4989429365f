"""ctrfs gc frees the layers no image needs; ctrfs df and images after imports: layers are
shared and hidden from the split; ctrfs tag of an imported image."""
import json
import os

from ocitree import ctrfs, fsck_clean, image_names, member, mkfs, tar_bytes
from toolrun import assert_ok


def layer(tmp_path, name, files):
    path = tmp_path / f"{name}.tar"
    path.write_bytes(tar_bytes([(member(n), data) for n, data in files]))
    return path


def test_gc_frees_only_unneeded_layers(tmp_path):
    img = mkfs(tmp_path / "s.img")
    a = layer(tmp_path, "a", [("big", os.urandom(200_000))])
    b = layer(tmp_path, "b", [("other", os.urandom(100_000))])
    assert_ok(ctrfs("import", img, a, "--name", "a:1", "-q"))
    assert_ok(ctrfs("import", img, b, "--name", "b:1", "-q"))
    assert_ok(ctrfs("tag", img, "a:1", "a:2"))
    layers = sorted(n for n in image_names(img) if n.startswith(b"@layer/"))
    assert len(layers) == 2
    assert_ok(ctrfs("rm", img, "a:1"))
    out = assert_ok(ctrfs("gc", "-n", img)).out
    assert out == ""                                   # a:2 still stands on a's layer
    assert_ok(ctrfs("rm", img, "a:2"))
    out = assert_ok(ctrfs("gc", "-n", img)).out
    assert out.count("would delete @layer/") == 1
    assert len([n for n in image_names(img) if n.startswith(b"@layer/")]) == 2   # dry run
    out = assert_ok(ctrfs("gc", img)).out
    assert "1 layer deleted" in out and "KiB of file data freed" in out
    names = image_names(img)
    assert sorted(n for n in names if n.startswith(b"@layer/")) != layers and b"b:1" in names
    assert assert_ok(ctrfs("gc", img)).out.startswith("0 layers deleted")
    fsck_clean(img)


def test_df_after_import_shares_layers(tmp_path):
    img = mkfs(tmp_path / "s.img")
    common = os.urandom(80_000)
    a = layer(tmp_path, "a", [("common", common), ("a", os.urandom(40_000))])
    b = layer(tmp_path, "b", [("common", common), ("b", os.urandom(20_000))])
    assert_ok(ctrfs("import", img, a, "--name", "a:1", "-q"))
    assert_ok(ctrfs("import", img, b, "--name", "b:1", "-q"))
    res = json.loads(assert_ok(ctrfs("df", "--json", img)).out)
    trees = {t["name"]: t for t in res["trees"]}
    assert not any(n.startswith("@layer/") for n in trees)           # hidden from the split
    blk = lambda n: -(-n // 4096) * 4096   # noqa: E731
    assert trees["a:1"]["unique"] == blk(40_000) and trees["b:1"]["unique"] == blk(20_000)
    assert trees["a:1"]["shared"] == trees["b:1"]["shared"] == blk(80_000)
    assert res["device"]["data"] == blk(80_000) + blk(40_000) + blk(20_000)


def test_images_hides_layers_unless_all(tmp_path):
    img = mkfs(tmp_path / "s.img")
    assert_ok(ctrfs("import", img, layer(tmp_path, "a", [("f", b"x")]), "--name", "a:1", "-q"))
    plain = assert_ok(ctrfs("images", img)).out
    every = assert_ok(ctrfs("images", "--all", img)).out
    assert not any(line.startswith("@layer/") for line in plain.splitlines())
    assert any(line.startswith("a ") for line in plain.splitlines())
    layer_line = [line for line in every.splitlines() if line.startswith("@layer/sha256:")]
    assert len(layer_line) == 1 and " image " in layer_line[0]
    rows = {r["name"]: r for r in json.loads(assert_ok(ctrfs("images", "--json", "-a", img)).out)}
    assert rows["a:1"]["parent"].startswith("@layer/sha256:")
