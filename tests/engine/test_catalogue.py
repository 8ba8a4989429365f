"""The image catalogue (ctrfs/catalogue.py): the NAME[:TAG] grammar as a property (every
valid reference parses and round-trips, every malformed one is refused), and the naming
policy over a real engine: one image for `x` and `x:latest`, keys of older ctrfs still
found, ctrfs's own `@` trees refused or needing force, @default made again when gone."""
import logging
import stat
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ctrfs import catalogue as cat
from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.mkfs.geometry import make_filesystem

ALNUM = string.ascii_lowercase + string.digits
TAGCHARS = string.ascii_letters + string.digits + "._-"

alnum = st.text(ALNUM, min_size=1, max_size=8)
separator = st.sampled_from([".", "_", "__", "-", "--"])
component = st.builds(lambda first, rest: first + "".join(s + a for s, a in rest),
                      alnum, st.lists(st.tuples(separator, alnum), max_size=3))
path = st.lists(component, min_size=1, max_size=4).map("/".join)
hostpart = st.one_of(st.sampled_from(ALNUM),
                     st.builds(lambda a, mid, b: a + mid + b, st.sampled_from(ALNUM),
                               st.text(ALNUM + "-", max_size=5), st.sampled_from(ALNUM)))
host = st.one_of(
    st.just("localhost"),
    st.builds(lambda parts: ".".join(parts), st.lists(hostpart, min_size=2, max_size=3)),
    st.builds(lambda h, port: f"{h}:{port}", st.lists(hostpart, min_size=1, max_size=3).map(".".join),
              st.integers(1, 65535)))
tag = st.builds(lambda first, rest: first + rest, st.sampled_from(string.ascii_letters + string.digits + "_"),
                st.text(TAGCHARS, max_size=127))


@st.composite
def references(draw):
    """(text, expected name, expected tag or None)."""
    name = draw(path)
    if draw(st.booleans()):
        name = draw(host) + "/" + name
    t = draw(st.none() | tag)
    text = name if t is None else f"{name}:{t}"
    assume(len(f"{name}:{t or 'latest'}") <= cat.REF_MAX)
    return text, name, t


@given(references())
def test_valid_references_parse_and_round_trip(case):
    text, name, t = case
    ref = cat.parse_reference(text)
    assert (ref.name, ref.tag, ref.tagged) == (name, t or "latest", t is not None)
    assert ref.key == f"{name}:{t or 'latest'}".encode()
    again = cat.parse_reference(ref.key)          # the stored key is itself a reference
    assert again.key == ref.key and again.tagged
    assert cat.split_key(ref.key) == (name, t or "latest")
    assert cat.parse_reference(text.encode()) == ref


def _spoil(draw, text):
    """One of the ways a reference goes wrong, applied to a valid one."""
    name, _sep, _tag = text.partition(":") if "/" not in text.rpartition(":")[2] else (text, "", "")
    how = draw(st.sampled_from(["upper", "empty", "dotdot", "lead", "trail", "newline", "at",
                                "longtag", "emptytag", "badtag", "nul", "space", "nonascii"]))
    if how == "upper":
        i = draw(st.integers(0, len(name) - 1))
        assume(name[i] in string.ascii_lowercase)     # hosts too: ctrfs wants them lower case
        return name[:i] + name[i].upper() + name[i + 1:]
    if how == "empty":
        i = draw(st.integers(0, name.count("/")))
        parts = name.split("/")
        return "/".join(parts[:i + 1] + [""] + parts[i + 1:])
    if how == "dotdot":
        return name + ".." + draw(alnum)
    if how == "lead":
        return draw(st.sampled_from("/._-:")) + name
    if how == "trail":
        return name + draw(st.sampled_from(["/", ".", "_", "-", ":"]))
    if how == "newline":
        i = draw(st.integers(0, len(text)))
        return text[:i] + "\n" + text[i:]
    if how == "at":
        return draw(st.sampled_from(["@", "@clone/", "@default/"])) + text
    if how == "longtag":
        return name + ":" + "t" * draw(st.integers(129, 300))
    if how == "emptytag":
        return name + ":"
    if how == "badtag":
        return name + ":" + draw(st.sampled_from([".t", "-t", "t/", "t:u", "t!", "t t"]))
    if how == "nul":
        return text + "\0"
    if how == "space":
        return name + " " + draw(alnum)
    return name + "\u00e9"


@given(st.data())
def test_malformed_references_are_refused(data):
    text, _name, _t = data.draw(references())
    bad = _spoil(data.draw, text)
    with pytest.raises(cat.BadNameError) as e:
        cat.parse_reference(bad)
    msg = str(e.value)
    assert msg.startswith("bad image name ") and "\n" not in msg


@pytest.mark.parametrize("text", ["bad name!", ":", "x:", "bad\nname", "@evil", "@clone/myimg:1",
                                  "", "a//b", "a..b", "/abs", "Upper", "a/b:c/d", "x@sha256:0"])
def test_bad_names_of_the_issue(text):
    with pytest.raises(cat.BadNameError):
        cat.parse_reference(text)


def test_length_limit_leaves_room_for_the_clone_key():
    name = "a" * (cat.REF_MAX - len(":latest"))
    ref = cat.parse_reference(name)
    assert len(cat.clone_key(ref.key)) == C.SNAP_NAME_MAX
    with pytest.raises(cat.BadNameError, match="longer than"):
        cat.parse_reference(name + "a")


def test_shown_is_one_printable_line():
    assert cat.shown(b"a\nb\tc\xff") == "a\\x0ab\\x09c\\xff"
    assert cat.shown("ok/name:1") == "ok/name:1"


# ---- the policy over a real engine ----------------------------------------------------------
@pytest.fixture
def engine():
    dev = MemoryDevice(bytearray(8 << 20))
    engine = make_filesystem(dev, block_size=4096, segment_blocks=16)
    yield engine
    engine.close()


def commit_default(engine, key):
    """The raw engine API, as older ctrfs used it: any key."""
    FileSystem(engine, C.DEFAULT_TREE_NAME).commit(image=key)


def test_one_image_for_name_and_name_latest(engine):
    key = cat.new_key(engine, "busybox")
    assert key == b"busybox:latest"
    commit_default(engine, key)
    for text in ("busybox", "busybox:latest", b"busybox"):
        assert cat.find(engine, text) == b"busybox:latest"
        with pytest.raises(cat.ImageExistsError):
            cat.new_key(engine, text)
    assert cat.find(engine, "busybox:1") is None
    assert cat.new_key(engine, "busybox:1") == b"busybox:1"


def test_keys_of_older_ctrfs_are_found(engine):
    for key in (b"old", b"Bad Name!", b"@evil"):
        commit_default(engine, key)
    assert cat.find(engine, "old") == cat.find(engine, "old:latest") == b"old"
    with pytest.raises(cat.ImageExistsError):     # `old` and `old:latest` would be one image
        cat.new_key(engine, "old")
    assert cat.find(engine, "Bad Name!") == b"Bad Name!"
    assert cat.split_key(b"Bad Name!") == ("Bad Name!", "")
    assert cat.split_key(b"old") == ("old", "")
    assert cat.resolve(engine, "@evil") == b"@evil"
    with pytest.raises(cat.NoSuchImageError):
        cat.resolve(engine, "nope")
    with pytest.raises(cat.BadNameError):
        cat.resolve(engine, "No Such!")


def test_new_names_never_start_with_at(engine):
    for text in ("@default", "@clone/x:1", "@x"):
        with pytest.raises(cat.BadNameError, match="ctrfs's own"):
            cat.new_key(engine, text)
        with pytest.raises(cat.BadNameError):
            cat.clone(engine, "@default", text)
    assert [k for k, _e in engine.snapshots()] == [C.DEFAULT_TREE_NAME]


def test_remove_own_trees_needs_force(engine):
    commit_default(engine, b"img:1")
    seq = engine.seq
    with pytest.raises(cat.UsageError, match="--force"):
        cat.remove(engine, ["img:1", "@default"])
    assert engine.snapshot(b"img:1") is not None          # nothing deleted, not even img:1
    assert engine.seq == seq
    notes = cat.remove(engine, ["@default", "img:1"], force=True)
    assert notes == ["removed @default: the next mount without image= starts an empty @default"]
    assert engine.snapshots() == []


def test_mount_tree_remakes_default_and_clones_by_tag(engine, caplog):
    commit_default(engine, b"myimg:1")
    cat.remove(engine, ["@default"], force=True)
    engine.commit()
    with pytest.raises(cat.NoSuchImageError, match="@default"):
        cat.mount_tree(engine, None, readonly=True)
    with caplog.at_level(logging.WARNING):
        assert cat.mount_tree(engine, None, log=logging.getLogger("t")) == C.DEFAULT_TREE_NAME
    assert "started an empty @default" in caplog.text
    fs = FileSystem(Engine.open(engine.dev), C.DEFAULT_TREE_NAME)   # committed: an empty root
    assert stat.S_ISDIR(fs.getattr(C.ROOT_INO).mode) and list(fs.readdir(C.ROOT_INO)) == []
    assert cat.mount_tree(engine, "myimg:1") == b"@clone/myimg:1"
    assert engine.snapshot(b"@clone/myimg:1")["kind"] == C.SNAP_WRITABLE
    assert cat.mount_tree(engine, "myimg:1", readonly=True) == b"myimg:1"
    assert cat.mount_tree(engine, "@clone/myimg:1") == b"@clone/myimg:1"


def test_mount_tree_refuses_an_image_in_the_clone_slot(engine):
    """Older ctrfs let `ctrfs clone --image DEV x @clone/myimg:1` make an image there; a rw
    mount of myimg:1 then went read-only silently.  Now it says so."""
    commit_default(engine, b"myimg:1")
    engine.clone(b"myimg:1", b"@clone/myimg:1", C.SNAP_IMAGE)
    with pytest.raises(cat.UsageError, match="not the writable clone"):
        cat.mount_tree(engine, "myimg:1")
