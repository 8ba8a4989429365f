"""Image names through the `ctrfs` command: every bad name of issue 8 is refused with one
line and exit 16 and leaves the device byte for byte as it was; ctrfs's own trees are
deleted only with --force; listings of devices made by older ctrfs (any key) stay one row
per entry."""
import hashlib
import json

from test_ctrfs_cli import commit_image, ctrfs_error, images_json
from toolrun import assert_ok, ctrfs

BAD_NAMES = ["bad name!", ":", "x:", "bad\nname", "@evil", "@clone/myimg:1",
             "a//b:c", "a/b:c:d", "Upper", "x:" + "t" * 129, "_lead", "a..b", ""]


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_bad_names_are_refused_and_nothing_written(image, tmp_path):
    before = digest(image)
    for name in BAD_NAMES:
        ctrfs_error(ctrfs("clone", image, "@default", name), 16, "bad image name")
        ctrfs_error(ctrfs("clone", "--image", image, "@default", name), 16, "bad image name")
        # commit checks the name before it looks at the mount point (tests/fuse: a real one)
        ctrfs_error(ctrfs("commit", tmp_path, name), 16, "bad image name")
        # rm: never a bad name; an @ name that does not exist is just missing
        line = ctrfs_error(ctrfs("rm", image, name), 16)
        assert ("no image or tree named" if name.startswith("@") else "bad image name") in line
    assert digest(image) == before


def test_messages_escape_the_name(image):
    line = ctrfs_error(ctrfs("clone", image, "@default", "bad\nname"), 16)
    assert "'bad\\x0aname'" in line


def test_a_tagged_path_is_a_good_name(image):
    """`a/b:c` was on the issue's list, but it is a valid reference (path a/b, tag c):
    accepted, listed as NAME a/b TAG c, and its clone key is unambiguous."""
    assert_ok(ctrfs("clone", "--image", image, "@default", "a/b:c"))
    assert_ok(ctrfs("clone", "--image", image, "@default", "localhost:5000/a/b"))
    rows = images_json(image)
    assert (rows["a/b:c"]["image"], rows["a/b:c"]["tag"]) == ("a/b", "c")
    r = rows["localhost:5000/a/b:latest"]
    assert (r["image"], r["tag"]) == ("localhost:5000/a/b", "latest")


def test_name_and_name_latest_are_one_image(image):
    assert_ok(ctrfs("clone", "--image", image, "@default", "busybox"))
    before = digest(image)
    ctrfs_error(ctrfs("clone", "--image", image, "@default", "busybox:latest"), 16, "exists")
    assert digest(image) == before
    assert list(images_json(image)) == ["@default", "busybox:latest"]
    assert_ok(ctrfs("rm", image, "busybox:latest"))
    assert list(images_json(image)) == ["@default"]


def test_rm_default_needs_force(image):
    before = digest(image)
    ctrfs_error(ctrfs("rm", image, "@default"), 16, "--force", "empty @default")
    assert digest(image) == before
    res = assert_ok(ctrfs("rm", "--force", image, "@default"))
    assert res.out == "removed @default: the next mount without image= starts an empty @default\n"
    assert images_json(image) == {}


def test_rm_clone_with_force_says_what_comes_next(image):
    assert_ok(ctrfs("clone", "--image", image, "@default", "myimg:1"))
    assert_ok(ctrfs("clone", image, "myimg:1", "work"))
    before = digest(image)
    ctrfs_error(ctrfs("rm", image, "work", "@default"), 16, "--force")
    assert digest(image) == before                  # all names checked before any is deleted
    assert "work:latest" in images_json(image)


def test_listing_never_breaks_on_old_keys(image):
    """Older ctrfs stored any key: each still lists as one row, escaped, and the JSON
    listing keeps the exact key."""
    keys = [b"bad\nname", b"Bad Name!", b"old", b"\xff\xfe", b"tab\there", b"@evil"]
    for key in keys:
        commit_image(image, key, files=())
    out = assert_ok(ctrfs("images", image)).out
    lines = out.splitlines()
    assert len(lines) == 1 + 1 + len(keys)                # header, @default, the keys
    firsts = {line.split("  ")[0].rstrip() for line in lines[1:]}
    assert {"bad\\x0aname", "Bad Name!", "old", "\\xff\\xfe", "tab\\x09here", "@evil"} <= firsts
    old = next(line for line in lines if line.startswith("old "))
    assert old.split()[1] == "-"                         # untagged, as it was stored
    rows = json.loads(assert_ok(ctrfs("images", "--json", image)).out)
    assert {r["name"] for r in rows} >= {"bad\nname", "Bad Name!", "old", "tab\there"}


def test_old_keys_can_be_removed(image):
    for key in (b"old", b"Bad Name!", b"@evil"):
        commit_image(image, key, files=())
    assert_ok(ctrfs("rm", image, "old:latest", "Bad Name!"))    # untagged found by its :latest
    ctrfs_error(ctrfs("rm", image, "@evil"), 16, "--force")
    assert_ok(ctrfs("rm", "--force", image, "@evil"))
    assert list(images_json(image)) == ["@default"]
