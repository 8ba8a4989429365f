"""The image catalogue: how images and writable trees are named, found, made, cloned,
removed and listed.  The engine's snapshot table only stores entries under byte keys;
every naming rule is here.

User names are references `NAME[:TAG]` in the grammar of the OCI distribution spec, so
every image can be pushed to a registry under its name:

    reference := [HOST "/"] PATH [":" TAG]
    PATH      := COMPONENT ("/" COMPONENT)*
    COMPONENT := [a-z0-9]+ ((\\. | _ | __ | -+) [a-z0-9]+)*
    HOST      := HOSTPART ("." HOSTPART)* [":" PORT]      (lower case; see below)
    HOSTPART  := [a-z0-9] | [a-z0-9][a-z0-9-]*[a-z0-9]
    TAG       := [A-Za-z0-9_][A-Za-z0-9._-]{0,127}         (default "latest")

As docker decides it, the first of several `/`-separated parts is a HOST when it holds a
`.` or a `:` or is `localhost` (and is a host: else it is a COMPONENT); a `:` after the last
`/` starts the tag.  Stricter than the
distribution grammar on purpose: hosts are lower case (host names are case-insensitive
anyway), no bracketed IPv6 hosts, no `@sha256:` digests (images here are named by tags),
and at most REF_MAX bytes so that the clone name below fits the snapshot key.  Names are
not expanded as docker does (`busybox` stays `busybox`, never `docker.io/library/busybox`).

An image is stored under its normalised `name:tag`, so `busybox` and `busybox:latest` are
one image.  Keys starting with `@` are ctrfs's own writable trees: `@default` (what a mount
without image= works on) and `@clone/NAME:TAG` (the writable clone a read-write mount of
image=NAME:TAG works on).  No user command creates an `@` name, and deleting one needs
`--force`.

Devices of older ctrfs may hold keys outside the grammar (`busybox` without a tag, or
anything).  They stay usable: `busybox` (or `busybox:latest`) finds an untagged `busybox`
when no `busybox:latest` exists, any other stored key is found by its exact bytes, and
listings escape what is not printable."""
import re
from typing import NamedTuple

from .errors import DeviceError, UsageError
from .format import constants as C

DEFAULT_TREE = C.DEFAULT_TREE_NAME
OWN_PREFIX = b"@"
LAYER_PREFIX = b"@layer/"      # an imported layer: the tree of all layers up to it (by ChainID)
CLONE_PREFIX = b"@clone/"
DEFAULT_TAG = "latest"
REF_MAX = C.SNAP_NAME_MAX - len(CLONE_PREFIX)

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*\Z")
_HOSTPART = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_HOST = re.compile(rf"{_HOSTPART}(?:\.{_HOSTPART})*(?::[0-9]+)?\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
GRAMMAR = "NAME[:TAG], NAME lower-case a-z 0-9 parts joined by / . _ -"


class BadNameError(UsageError):
    """Text that is no reference (or names a tree of ctrfs's own where that is refused)."""


class NoSuchImageError(UsageError):
    pass


class ImageExistsError(UsageError):
    pass


class Reference(NamedTuple):
    name: str          # [HOST/]PATH
    tag: str
    tagged: bool       # False: the text had no tag and DEFAULT_TAG was supplied

    @property
    def key(self):
        """The snapshot key the image is stored under."""
        return f"{self.name}:{self.tag}".encode()

    def __str__(self):
        return f"{self.name}:{self.tag}"


def _bytes(text):
    return text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")


def shown(name):
    """A stored key or user text as one printable line: what is not printable (a newline,
    a tab, invalid UTF-8) becomes an escape, so a listing's rows never break."""
    out = []
    for ch in _bytes(name).decode("utf-8", "backslashreplace"):
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii") if ord(ch) > 0xff
                       else f"\\x{ord(ch):02x}")
    return "".join(out)


def quoted(name):
    return f"'{shown(name)}'"


def _bad(text, why):
    return BadNameError(f"bad image name {quoted(text)}: {why}")


def parse_reference(text):
    """NAME[:TAG] -> Reference, or BadNameError saying what is wrong."""
    raw = _bytes(text)
    if not raw:
        raise _bad(raw, "empty")
    if raw.startswith(OWN_PREFIX):
        raise _bad(raw, "names starting with @ are ctrfs's own trees (@default, @clone/...)")
    try:
        s = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _bad(raw, "not ASCII") from None
    if "@" in s:
        raise _bad(raw, "digests (@sha256:...) are not accepted: name images by tag")
    name, sep, tag = s.rpartition(":")
    if not sep or "/" in tag:
        name, tag = s, ""        # no ':' after the last '/': a port or no tag at all
    elif not tag:
        raise _bad(raw, "empty tag after ':'")
    elif len(tag) > 128:
        raise _bad(raw, f"a tag of {len(tag)} characters (at most 128)")
    elif not _TAG.match(tag):
        raise _bad(raw, f"bad tag {quoted(tag)} (A-Z a-z 0-9 _ . -, not first . or -)")
    parts = name.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        if _HOST.match(first):
            parts = parts[1:]
        elif ":" in first:    # else it may still be a path component, as the grammar has it
            raise _bad(raw, f"bad registry host {quoted(first)} (lower-case host[:port])")
    for part in parts:
        if not part:
            raise _bad(raw, "empty name component (leading, trailing or double /)")
        if not _COMPONENT.match(part):
            raise _bad(raw, f"bad name component {quoted(part)} (lower-case a-z 0-9, "
                       "separated inside by . _ __ or -)")
    ref = Reference(name, tag or DEFAULT_TAG, bool(tag))
    if len(ref.key) > REF_MAX:
        raise _bad(raw, f"longer than {REF_MAX} bytes with its tag")
    return ref


def is_own(key):
    return key.startswith(OWN_PREFIX)


def is_hidden(key):
    """Layers below an image: listed by `images --all`, left out of `df`'s split."""
    return key.startswith(LAYER_PREFIX)


def clone_key(image_key):
    """The writable tree a read-write mount of an image works on."""
    return CLONE_PREFIX + image_key


# ---- finding -------------------------------------------------------------------------------
def find(engine, text):
    """The stored key `text` names, or None.  `@` names and keys outside the grammar match
    their exact bytes; a reference matches its normalised key, then (tag latest) the
    untagged key older ctrfs stored."""
    raw = _bytes(text)
    try:
        ref = parse_reference(raw)
    except BadNameError:
        candidates = [raw]
    else:
        candidates = [ref.key] + ([ref.name.encode()] if ref.tag == DEFAULT_TAG else []) + [raw]
    for key in candidates:
        if key and engine.snapshot(key) is not None:
            return key
    return None


def resolve(engine, text):
    """find(), or NoSuchImageError for a name that could exist, BadNameError for one that
    cannot."""
    key = find(engine, text)
    if key is not None:
        return key
    raw = _bytes(text)
    if not is_own(raw):
        parse_reference(raw)
    raise NoSuchImageError(f"no image or tree named {quoted(raw)}")


def new_key(engine, text):
    """The key for a new image or tree named `text` (by the user: never an `@` name)."""
    ref = parse_reference(text)
    taken = find(engine, ref.key)
    if taken is not None:
        raise ImageExistsError(f"an image or tree named {quoted(taken)} exists")
    return ref.key


# ---- making and removing ------------------------------------------------------------------
def clone(engine, src, dst, kind=C.SNAP_WRITABLE):
    """`ctrfs clone`: dst (a new user name) shares every block of src.  Returns dst's key."""
    src_key = resolve(engine, src)
    dst_key = new_key(engine, dst)
    engine.clone(src_key, dst_key, kind)
    return dst_key


def tag(engine, src, dst):
    """`ctrfs tag`: dst (a new image name) is src under another name: the same root, the
    same parent, so it lists, mounts and exports as src does.  Returns dst's key."""
    src_key = resolve(engine, src)
    e = engine.snapshot(src_key)
    if e["kind"] != C.SNAP_IMAGE:
        raise UsageError(f"{shown(src_key)} is a writable tree: commit it as an image first")
    dst_key = new_key(engine, dst)
    engine.create_tree(dst_key, e["root"], C.SNAP_IMAGE, parent_name=e["parent_name"],
                       parent_root=e["parent_root"], logical_bytes=e["logical_bytes"],
                       inodes=e["inodes"])
    return dst_key


def unneeded_layers(engine):
    """Layer snapshots that no image or tree stands on (through its chain of parents):
    what `ctrfs gc` frees.  A layer is kept while anything above it is."""
    snaps = dict(engine.snapshots())
    needed = set()
    for key in snaps:
        if is_hidden(key):
            continue
        parent = snaps[key]["parent_name"]
        while parent and parent in snaps and parent not in needed:
            needed.add(parent)
            parent = snaps[parent]["parent_name"]
    return sorted(k for k in snaps if is_hidden(k) and k not in needed)


def after_removal(key):
    """What the next mount does once own tree `key` is gone (one line for `ctrfs rm`)."""
    if key == DEFAULT_TREE:
        return "the next mount without image= starts an empty @default"
    if key.startswith(CLONE_PREFIX):
        image = shown(key[len(CLONE_PREFIX):])
        return f"the next read-write mount of image={image} starts a fresh clone of it"
    return "no mount uses it by default"


def remove(engine, names, *, force=False):
    """`ctrfs rm`: delete images and trees (all names checked before any is deleted).  Own
    trees only with force; returns one line per own tree deleted, saying what comes next."""
    keys = []
    for text in names:
        key = resolve(engine, text)
        mounted = getattr(engine, "mounted_at", None)        # a daemon's engine (tool.Borrowed)
        if mounted is not None and mounted(key):
            raise DeviceError(f"{shown(key)} is mounted at {mounted(key)}: umount it first")
        if is_own(key) and not force:
            raise UsageError(f"{shown(key)} is a tree of ctrfs's own ({after_removal(key)} if it "
                             "is deleted): give --force to delete it")
        if key not in keys:
            keys.append(key)
    notes = []
    for key in keys:
        engine.delete(key)
        if is_own(key):
            notes.append(f"removed {shown(key)}: {after_removal(key)}")
    return notes


def mount_tree(engine, image=None, *, readonly=False, log=None):
    """The tree a mount works on.  No image: @default, made afresh (empty) if it was
    removed.  image=NAME read-only: that image or tree.  Read-write: a writable tree as it
    is, or for an image its writable clone @clone/NAME:TAG, made on first use."""
    if image is None:
        if engine.snapshot(DEFAULT_TREE) is None:
            if readonly:
                raise NoSuchImageError("no tree @default (deleted with ctrfs rm --force): "
                                       "mount read-write once to start an empty one")
            from .filesystem import init_tree

            engine.create_tree(DEFAULT_TREE)
            init_tree(engine.tree(DEFAULT_TREE))
            engine.commit()
            if log:
                log.warning("the tree @default was deleted: started an empty @default")
        return DEFAULT_TREE
    key = resolve(engine, image)
    e = engine.snapshot(key)
    if readonly or e["kind"] == C.SNAP_WRITABLE:
        return key
    clone = clone_key(key)
    ce = engine.snapshot(clone)
    if ce is None:
        engine.clone(key, clone)
        engine.commit()
        if log:
            log.info("created writable clone %s", shown(clone))
    elif ce["kind"] != C.SNAP_WRITABLE:
        raise UsageError(f"{shown(clone)} is an image, not the writable clone of {shown(key)} "
                         f"(made by an older ctrfs): ctrfs rm --force it, or mount ro")
    return clone


# ---- listing ---------------------------------------------------------------------------------
def split_key(key):
    """(image, tag) to show for a stored key: ('busybox', '1'), ('busybox', '') for an
    untagged key of older ctrfs; own trees and keys outside the grammar whole, escaped."""
    if is_own(key):
        return shown(key), ""
    try:
        ref = parse_reference(key)
    except BadNameError:
        return shown(key), ""
    return ref.name, ref.tag if ref.tagged else ""


def tree_logical_bytes(engine, root):
    """Sum of regular file sizes in an FS tree (for entries committed without a count)."""
    import stat

    from .format.items import NAMESPACE_END, key_type, unpack_inode
    from .tree import Tree

    if not root[0]:
        return 0
    total = 0
    for key, val in Tree(engine.store, C.TREE_FS, root).scan(b"", NAMESPACE_END):
        if len(key) == 9 and key_type(key) == C.ITEM_INODE:
            (mode, *_rest), _inline = unpack_inode(val)
            if stat.S_ISREG(mode):
                total += _rest[4]
    return total


def logical_sizes(engine, entries):
    """{key: logical bytes} of snapshot entries [(key, e)]: what an entry records (images
    count theirs; a recorded count has inodes > 0, the root at least), else counted from
    the tree once per root, or taken from an entry with the same root (a fresh clone and
    its image, a tree and the image just committed from it)."""
    known = {e["root"][1]: e["logical_bytes"] for _k, e in entries if e["inodes"]}
    out = {}
    for key, e in entries:
        h = e["root"][1]
        if e["inodes"]:
            out[key] = e["logical_bytes"]
            continue
        if h not in known:
            known[h] = tree_logical_bytes(engine, e["root"])
        out[key] = known[h]
    return out


def rows(engine):
    """One dict per image or tree, in key order: `name` and `parent` are the exact keys
    (decoded, for JSON), `image`/`tag` what a table shows."""
    import datetime

    entries = list(engine.snapshots())
    sizes = logical_sizes(engine, entries)
    out = []
    for key, e in entries:
        image, tag = split_key(key)
        root_hash = e["root"][1]
        size = sizes[key]
        created = datetime.datetime.fromtimestamp(e["created_ns"] / 1e9).astimezone()
        out.append(dict(
            name=key.decode("utf-8", "backslashreplace"), image=image, tag=tag,
            kind="image" if e["kind"] == C.SNAP_IMAGE else "writable",
            root=root_hash.hex(), size=size, inodes=e["inodes"],
            created=created.isoformat(timespec="seconds"), created_ns=e["created_ns"],
            parent=e["parent_name"].decode("utf-8", "backslashreplace") or None,
            parent_root=e["parent_root"].hex() if any(e["parent_root"]) else None))
    return out
