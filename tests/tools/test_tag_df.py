"""ctrfs tag (another name, no data copied) and ctrfs df (logical vs physical, unique and
shared bytes per image), through the console script on real devices."""
import json
import os

from test_ctrfs_cli import commit_image, ctrfs_error, images_json
from toolrun import assert_ok, ctrfs, file_bytes


def df_json(path):
    return json.loads(assert_ok(ctrfs("df", "--json", path)).out)


def test_tag_is_the_same_image(image):
    commit_image(image, b"app:1")
    assert_ok(ctrfs("tag", image, "app:1", "registry.local:5000/team/app:prod"))
    rows = images_json(image)
    a, b = rows["app:1"], rows["registry.local:5000/team/app:prod"]
    assert (a["root"], a["parent"], a["size"], a["kind"]) == (b["root"], b["parent"], b["size"], "image")
    assert df_json(image)["device"]["data"] == 2 * 4096     # x*10000: two distinct blocks, stored once


def test_tag_errors(image):
    commit_image(image, b"app:1")
    before = file_bytes(image)
    ctrfs_error(ctrfs("tag", image, "app:1", "app:1"), 16, "exists")
    ctrfs_error(ctrfs("tag", image, "app:1", "Bad Name"), 16, "bad image name")
    ctrfs_error(ctrfs("tag", image, "nope", "x"), 16, "no image")
    ctrfs_error(ctrfs("tag", image, "@default", "x"), 16, "writable tree")
    assert file_bytes(image) == before


def test_df_unique_and_shared(image):
    common, only_a, only_b = os.urandom(40960), os.urandom(8192), os.urandom(12288)
    commit_image(image, b"a:1", files=((b"common", common), (b"only", only_a)))
    commit_image(image, b"b:1", files=((b"common2", common), (b"only2", only_b)))
    res = df_json(image)
    trees = {t["name"]: t for t in res["trees"]}
    # @default holds everything (both commits wrote into it); a:1 its first state
    assert trees["a:1"]["referenced"] == 40960 + 8192
    assert trees["b:1"]["logical"] == 40960 + 8192 + 40960 + 12288
    assert trees["b:1"]["unique"] == 0 and trees["@default"]["unique"] == 0   # same root twice
    assert res["device"]["data"] == 40960 + 8192 + 12288                      # stored once
    assert res["device"]["dedup_ratio"] > 1.5
    out = assert_ok(ctrfs("df", image)).out
    assert "dedup" in out and "a:1" in out.splitlines()[2] + out


def test_df_not_ctrfs(tmp_path):
    path = tmp_path / "zero.img"
    path.write_bytes(bytes(1 << 20))
    ctrfs_error(ctrfs("df", path), 8, f"{path}: not a ctrfs file system")


def test_commit_of_an_unmounted_tree(image):
    from toolrun import run
    commit_image(image, b"base:1")                    # @default now goes on over base:1
    res = assert_ok(ctrfs("commit", image, "snap:1"))
    assert res.out == "committed snap:1\n"
    rows = images_json(image)
    assert rows["snap:1"]["kind"] == "image" and rows["snap:1"]["parent"] == "base:1"
    assert rows["snap:1"]["root"] == rows["@default"]["root"] and rows["@default"]["parent"] == "snap:1"
    assert_ok(ctrfs("clone", image, "snap:1", "work"))
    assert_ok(ctrfs("commit", image, "snap:2", "--tree", "work"))
    assert images_json(image)["snap:2"]["parent"] == "snap:1"
    before = file_bytes(image)
    ctrfs_error(ctrfs("commit", image, "snap:1"), 16, "exists")
    ctrfs_error(ctrfs("commit", image, "x:1", "--tree", "snap:1"), 16, "not a writable tree")
    ctrfs_error(ctrfs("commit", image, "Bad!"), 16, "bad image name")
    ctrfs_error(ctrfs("commit", image, "x:1", "--tree", "nope"), 16, "no image or tree")
    assert file_bytes(image) == before
    assert run("fsck.ctrfs", "-n", image).rc == 0
