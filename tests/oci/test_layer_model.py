"""Property: random layer stacks (add, change, delete, rename, opaque dirs, hardlinks within
and across layers, symlinks) imported in process give the tree a simple reference applier
gives when it applies the same layers to a model of a directory."""
import hashlib
import io
import stat
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st
from ocitree import describe_fs, member, tar_bytes

from ctrfs.device import MemoryDevice
from ctrfs.engine import Engine
from ctrfs.filesystem import FileSystem
from ctrfs.fsck.checks import check_device
from ctrfs.mkfs.geometry import make_filesystem
from ctrfs.oci.importer import Importer
from ctrfs.oci.layout import Image, Layer
from ctrfs.oci.streams import CheckedReader

NAMES = ("a", "b", "c")
D = tarfile.DIRTYPE


class Node:
    """A model inode: hardlinks are two paths naming one Node."""

    def __init__(self, kind, mode, mtime, data=b"", link=""):
        self.kind, self.mode, self.mtime, self.data, self.link = kind, mode, mtime, data, link


class Model:
    """The reference applier: a dict of paths, OCI whiteout/opaque rules, docker's
    replace rules, implicit parents 0755 with the member's time."""

    def __init__(self):
        self.paths = {(): Node("dir", 0o755, 0)}

    def blocked(self, path):
        """Whether a proper prefix of path is not a directory (the import refuses it)."""
        return any(path[:i] in self.paths and self.paths[path[:i]].kind != "dir" for i in range(len(path)))

    def remove(self, path):
        for p in [p for p in self.paths if p[:len(path)] == path and p]:
            del self.paths[p]

    def parents(self, path, mtime, mine):
        for i in range(1, len(path)):
            if path[:i] not in self.paths:
                self.paths[path[:i]] = Node("dir", 0o755, mtime)
                mine.add(path[:i])

    def apply(self, op, mine):
        kind, path = op[0], op[1]
        if kind == "whiteout":
            if path not in mine:
                self.remove(path)
            return
        if kind == "opaque":
            self.parents(path + ("x",), 7, mine)
            for p in [p for p in self.paths if len(p) == len(path) + 1 and p[:len(path)] == path]:
                if p not in mine:
                    self.remove(p)
            return
        self.parents(path, op[2], mine)
        old = self.paths.get(path)
        mine.add(path)
        if kind == "hardlink":
            target = self.paths[op[3]]
            if old is not target:
                self.remove(path)
                self.paths[path] = target
            return
        if old is not None and old.kind == "dir" and kind == "dir":
            old.mode, old.mtime = op[3], op[2]
            return
        if old is not None:
            self.remove(path)
        if kind == "dir":
            self.paths[path] = Node("dir", op[3], op[2])
        elif kind == "file":
            self.paths[path] = Node("file", op[3], op[2], data=op[4])
        else:
            self.paths[path] = Node("symlink", 0o777, op[2], link=op[3])

    def describe(self):
        rows, groups = {}, {}
        for path, n in self.paths.items():
            text = "/" + "/".join(path)
            ifmt = {"dir": stat.S_IFDIR, "file": stat.S_IFREG, "symlink": stat.S_IFLNK}[n.kind]
            rows[text] = dict(mode=ifmt | n.mode, uid=0, gid=0, mtime_ns=n.mtime * 10**9,
                              size=len(n.data) if n.kind == "file" else None, rdev=0,
                              content=hashlib.sha256(n.data).hexdigest() if n.kind == "file" else None,
                              link=n.link.encode() if n.kind == "symlink" else None, xattrs={})
            if n.kind == "file":
                groups.setdefault(id(n), []).append(text)
        return rows, sorted(sorted(g) for g in groups.values() if len(g) > 1)


def to_member(op):
    kind, path = op[0], "/".join(op[1])
    if kind == "whiteout":
        return member("/".join(op[1][:-1] + (".wh." + op[1][-1],)), mode=0), b""
    if kind == "opaque":
        return member(path + "/.wh..wh..opq", mode=0), b""
    if kind == "dir":
        return member(path, D, mode=op[3], mtime=op[2]), None
    if kind == "file":
        return member(path, mode=op[3], mtime=op[2]), op[4]
    if kind == "hardlink":
        return member(path, tarfile.LNKTYPE, link="/".join(op[3]), mtime=op[2]), None
    return member(path, tarfile.SYMTYPE, link=op[3], mtime=op[2]), None


paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(tuple)


@st.composite
def stacks(draw):
    """[(layer tar bytes)] and the model after all of them."""
    model = Model()
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        mine, members = set(), []
        for _ in range(draw(st.integers(1, 7))):
            kind = draw(st.sampled_from(("file", "file", "dir", "symlink", "hardlink", "whiteout",
                                         "opaque", "rename")))
            path = draw(paths)
            mtime = draw(st.integers(1, 2_000_000_000))
            files = sorted(p for p, n in model.paths.items() if n.kind == "file")
            existing = sorted(p for p in model.paths if p)
            if kind == "file":
                op = ("file", path, mtime, draw(st.sampled_from((0o644, 0o755, 0o4755))),
                      draw(st.binary(max_size=3000)))
            elif kind == "dir":
                op = ("dir", path, mtime, draw(st.sampled_from((0o755, 0o700, 0o1777))))
            elif kind == "symlink":
                op = ("symlink", path, mtime, draw(st.sampled_from(("/etc", "../a", "b/c", "x"))))
            elif kind == "hardlink":
                if not files:
                    continue
                op = ("hardlink", path, mtime, draw(st.sampled_from(files)))
                if model.blocked(op[3]) or op[3][:len(path)] == path:
                    continue
            elif kind in ("whiteout", "opaque"):
                if not existing:
                    continue
                path = draw(st.sampled_from(existing))
                if kind == "opaque" and model.paths[path].kind != "dir":
                    continue
                op = (kind, path)
            else:                                   # rename: whiteout the old, add the new
                if not files:
                    continue
                old = draw(st.sampled_from(files))
                if old in mine or model.blocked(path) or path[:len(old)] == old:
                    continue
                n = model.paths[old]
                for o in (("whiteout", old), ("file", path, mtime, n.mode, n.data)):
                    model.apply(o, mine)
                    members.append(to_member(o))
                continue
            if model.blocked(path):
                continue
            if kind == "hardlink" and path in model.paths and model.paths[path].kind == "dir":
                continue
            model.apply(op, mine)
            members.append(to_member(op))
        layers.append(tar_bytes(members))
    return layers, model


def import_stack(layers, threads):
    dev = MemoryDevice(bytearray(32 << 20))
    make_filesystem(dev, segment_blocks=16)
    eng = Engine.open(dev)
    image = Image(None, [Layer(f"layer {i}", (lambda t=t: CheckedReader(io.BytesIO(t), "layer")))
                         for i, t in enumerate(layers)])
    root = Importer(eng, threads=threads).import_image(image, b"t:1")[0]
    eng.commit()
    return eng, dev, root


@settings(max_examples=60)
@given(stacks(), st.booleans())
def test_random_layer_stacks_match_the_reference(stack, threads):
    layers, model = stack
    eng, dev, _root = import_stack(layers, threads)
    got = describe_fs(FileSystem(eng, b"t:1", writable=False))
    want = model.describe()
    assert sorted(got[0]) == sorted(want[0])
    for path in want[0]:
        assert got[0][path] == want[0][path], path
    assert got[1] == want[1]
    res = check_device(MemoryDevice(dev.data, readonly=True))
    assert res.exit_code == 0, res.problems


@settings(max_examples=15)
@given(stacks())
def test_import_is_deterministic(stack):
    layers, _model = stack
    assert import_stack(layers, True)[2] == import_stack(layers, False)[2]


def nothing_replaced(layer):
    """No member is replaced within its own layer: no later member names it or one of
    its directories (whiteouts and opaque markers spare what their own layer wrote)."""
    with tarfile.open(fileobj=io.BytesIO(layer)) as tf:
        paths = [tuple(p for p in m.name.split("/") if p not in ("", ".")) for m in tf.getmembers()]
    for j, later in enumerate(paths):
        if later and later[-1].startswith(".wh."):
            continue
        if any(earlier[:len(later)] == later for earlier in paths[:j]):
            return False
    return True


@settings(max_examples=25)
@given(stacks())
def test_export_gives_each_layer_back_byte_for_byte(stack):
    """Export writes every imported layer from its recipe: the tar it came from, so its
    diff_id is the one it was imported with (a layer that replaces its own members falls
    back to the tree diff, which gives the same tree but other bytes)."""
    import json
    import tempfile

    from ctrfs.oci.export import export_oci

    layers, _model = stack
    eng, _dev, _root = import_stack(layers, True)
    with tempfile.TemporaryDirectory() as tmp:
        desc, n = export_oci(eng, b"t:1", tmp + "/out", "1")
        blob = lambda d: json.load(open(f"{tmp}/out/blobs/sha256/{d['digest'].split(':')[1]}"))  # noqa: E731
        config = blob(blob(desc)["config"])
    want = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
    got = config["rootfs"]["diff_ids"]
    assert n == len(got)
    if all(nothing_replaced(t) for t in layers):
        assert got == want
    # the recipe is kept in the layer's tree, so a device stays clean with it
    res = check_device(MemoryDevice(_dev.data, readonly=True))
    assert res.exit_code == 0, res.problems
