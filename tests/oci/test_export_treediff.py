"""The tree diff (ctrfs/treediff.py): applied to a copy of the parent as an OCI layer is
applied, it gives the child (hypothesis, random trees and random changes made through
FileSystem); and it reads few nodes when little changed."""
import stat

from exporttree import ROOT, apply_changes, assert_same, fs_manifest, new_engine, walk_paths
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrfs.errors import FsError
from ctrfs.filesystem import FileSystem
from ctrfs.format import constants as C
from ctrfs.treediff import ENTRY, LINK, OPAQUE, WHITEOUT, TreeDiff, item_diff, tree_changes

SIZES = (0, 7, 1500, 4096, 9000, 20000)
OPS = ("file", "file", "mkdir", "symlink", "fifo", "chardev", "link", "unlink", "rmtree", "rename",
       "write", "truncate", "chmod", "chown", "utime", "setxattr", "rmxattr", "replace_dir")
op_lists = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6),
                              st.integers(0, 255)), max_size=30)


def rm_tree(fs, parent, name):
    ino = fs.lookup(parent, name)
    if fs.getattr(ino).is_dir:
        for child, _i, _c in list(fs.readdir(ino)):
            rm_tree(fs, ino, child)
        fs.rmdir(parent, name)
    else:
        fs.unlink(parent, name)


def run_op(fs, op, i, j, byte):
    """One random change; ops that do not apply to the drawn objects are skipped."""
    paths = walk_paths(fs)
    dirs = [(b"", ROOT)] + [(p, ino) for p, ino, d in paths if d]
    files = [(p, ino) for p, ino, d in paths if not d and fs.getattr(ino).is_reg]
    others = [(p, ino) for p, ino, d in paths]
    d = dirs[i % len(dirs)][1]
    name = b"n%d" % (j % 7)
    data = bytes([byte]) * SIZES[j % len(SIZES)]
    try:
        if op == "file":
            ino = fs.mknod(d, name, stat.S_IFREG | 0o644, uid=j % 3).ino
            fs.write(ino, (i % 3) * 5000, data)
        elif op == "mkdir":
            fs.mkdir(d, name, 0o755, gid=i % 2)
        elif op == "symlink":
            fs.symlink(d, name, b"target/%d" % i)
        elif op == "fifo":
            fs.mknod(d, name, stat.S_IFIFO | 0o600)
        elif op == "chardev":
            fs.mknod(d, name, stat.S_IFCHR | 0o666, rdev=(1 << 8) | (j % 9))
        elif op == "link" and files:
            fs.link(files[j % len(files)][1], d, name)
        elif op in ("unlink", "rmtree", "rename", "chmod", "chown", "utime", "setxattr", "rmxattr") and others:
            path, ino = others[j % len(others)]
            parent = fs.parent_of(ino) if fs.getattr(ino).is_dir else _parent_of(fs, path)
            base = path.rsplit(b"/", 1)[-1]
            if op in ("unlink", "rmtree"):
                rm_tree(fs, parent, base)
            elif op == "rename":
                fs.rename(parent, base, d, name)
            elif op == "chmod" and not stat.S_ISLNK(fs.getattr(ino).mode):
                fs.setattr(ino, mode=0o700 | (i % 0o77))
            elif op == "chown":
                fs.setattr(ino, uid=1000 + i % 3, gid=i % 5)
            elif op == "utime":
                fs.setattr(ino, mtime_ns=1_600_000_000_123_456_789 + i)
            elif op == "setxattr":
                fs.setxattr(ino, b"trusted.t%d" % (i % 3), bytes([byte]) * (i % 40))
            elif op == "rmxattr":
                fs.removexattr(ino, b"trusted.t%d" % (i % 3))
        elif op in ("write", "truncate") and files:
            ino = files[j % len(files)][1]
            if op == "write":
                fs.write(ino, (i % 7) * 3000, data or b"x")
            else:
                fs.setattr(ino, size=(i % 5) * 2500)
        elif op == "replace_dir" and len(dirs) > 1:
            path, ino = dirs[1 + j % (len(dirs) - 1)]
            parent, base = fs.parent_of(ino), path.rsplit(b"/", 1)[-1]
            rm_tree(fs, parent, base)
            fs.mkdir(parent, base, 0o750)
    except FsError:
        pass


def _parent_of(fs, path):
    d = ROOT
    for part in path.split(b"/")[:-1]:
        d = fs.lookup(d, part)
    return d


def layered(engine, base_ops, top_ops):
    """Images p (base_ops on an empty tree) and c (top_ops on a clone of p)."""
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
    a = fs.mkdir(ROOT, b"a", 0o755).ino          # a skeleton, so that the changes have
    b = fs.mkdir(a, b"b", 0o755).ino             # directories with content to hit
    for k, d in enumerate((ROOT, a, b, a)):
        fs.write(fs.mknod(d, b"s%d" % k, stat.S_IFREG | 0o644).ino, 0, b"skeleton" * (k * 300))
    for op in base_ops:
        run_op(fs, *op)
    fs.commit(image=b"p")
    engine.clone(b"p", b"work")
    fs = FileSystem(engine, b"work")
    for op in top_ops:
        run_op(fs, *op)
    fs.commit(image=b"c")


def check_applies(engine):
    changes = tree_changes(engine, b"p", b"c")
    engine.clone(b"p", b"apply")
    dst = FileSystem(engine, b"apply")
    src = FileSystem(engine, b"c", writable=False)
    apply_changes(dst, src, changes)
    assert_same(fs_manifest(dst), fs_manifest(src))
    return changes


@given(op_lists, op_lists)
@settings(max_examples=60)
def test_diff_applied_to_the_parent_gives_the_child(base_ops, top_ops):
    engine = new_engine()
    try:
        layered(engine, base_ops, top_ops)
        check_applies(engine)
    finally:
        engine.close()


@given(op_lists, op_lists)
@settings(max_examples=40)
def test_item_diff_is_the_dict_difference(base_ops, top_ops):
    engine = new_engine()
    try:
        layered(engine, base_ops, top_ops)
        p, c = (engine.tree(n) for n in (b"p", b"c"))
        old = {bytes(k): bytes(v) for k, v in p.scan()}
        new = {bytes(k): bytes(v) for k, v in c.scan()}
        want = sorted((k, old.get(k), new.get(k)) for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        got = list(item_diff(engine.store, engine.snapshot(b"p")["root"], engine.snapshot(b"c")["root"]))
        assert got == want
    finally:
        engine.close()


# ---- the cases the layer format cares about, one by one -------------------------------------
def test_whiteouts_opaque_dirs_and_links():
    engine = new_engine()
    try:
        fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
        etc = fs.mkdir(ROOT, b"etc", 0o755).ino
        gone = fs.mkdir(ROOT, b"gone", 0o755).ino
        fs.mknod(gone, b"x", stat.S_IFREG | 0o644)
        rep = fs.mkdir(ROOT, b"rep", 0o755).ino
        fs.mknod(rep, b"old", stat.S_IFREG | 0o644)
        f = fs.mknod(etc, b"f", stat.S_IFREG | 0o644).ino
        fs.write(f, 0, b"lower")
        fs.mknod(etc, b"keep", stat.S_IFREG | 0o644)
        fs.commit(image=b"p")
        engine.clone(b"p", b"work")
        fs = FileSystem(engine, b"work")
        rm_tree(fs, ROOT, b"gone")
        rm_tree(fs, ROOT, b"rep")
        rep = fs.mkdir(ROOT, b"rep", 0o700).ino
        fs.mknod(rep, b"new", stat.S_IFREG | 0o644)
        fs.link(fs.lookup(etc, b"f"), ROOT, b"f-link")         # link to a lower-layer file
        fs.commit(image=b"c")
        changes = check_applies(engine)
        kinds = {(c.kind, c.path) for c in changes}
        assert (WHITEOUT, b"gone") in kinds
        assert (OPAQUE, b"rep") in kinds and (ENTRY, b"rep/new") in kinds
        assert (LINK, b"f-link") in {(c.kind, c.path) for c in changes}
        assert [c.target for c in changes if c.path == b"f-link"] == [b"etc/f"]
        assert not any(c.path.startswith(b"etc/") for c in changes)   # etc/f itself unchanged
    finally:
        engine.close()


def test_content_change_of_a_linked_file_rewrites_every_name():
    engine = new_engine()
    try:
        fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
        d = fs.mkdir(ROOT, b"d", 0o755).ino
        f = fs.mknod(ROOT, b"a", stat.S_IFREG | 0o644).ino
        fs.link(f, d, b"b")
        fs.commit(image=b"p")
        engine.clone(b"p", b"work")
        fs = FileSystem(engine, b"work")
        fs.write(f, 0, b"changed")
        fs.commit(image=b"c")
        changes = check_applies(engine)
        assert (ENTRY, b"a") in {(c.kind, c.path) for c in changes}
        assert [(c.kind, c.target) for c in changes if c.path == b"d/b"] == [(LINK, b"a")]
    finally:
        engine.close()


# ---- cost -----------------------------------------------------------------------------------------------
def big_image(engine, dirs=30, files=60):
    """dirs x files small files and a 16 MiB file: a tree of a few hundred nodes."""
    fs = FileSystem(engine, C.DEFAULT_TREE_NAME)
    for k in range(dirs):
        d = fs.mkdir(ROOT, b"dir%03d" % k, 0o755).ino
        for m in range(files):
            fs.write(fs.mknod(d, b"file%03d" % m, stat.S_IFREG | 0o644).ino, 0, b"%d-%d" % (k, m) * 20)
    big = fs.mknod(ROOT, b"big", stat.S_IFREG | 0o644).ino
    for off in range(0, 16 << 20, 1 << 20):
        fs.write(big, off, bytes([off >> 20]) * 4096 + b"\1" * ((1 << 20) - 4096))
    fs.commit(image=b"p")
    engine.clone(b"p", b"work")
    return FileSystem(engine, b"work")


def total_nodes(engine, name):
    return sum(1 for _ in engine.tree(name).walk_nodes())


def diff_cost(engine):
    d = TreeDiff(engine.store, engine.snapshot(b"p")["root"], engine.snapshot(b"c")["root"])
    changes = d.changes()
    return d.nodes_read, changes


def test_few_node_loads_for_a_namespace_change():
    engine = new_engine(128 << 20)
    try:
        fs = big_image(engine)
        d = fs.lookup(ROOT, b"dir017")
        fs.unlink(d, b"file005")
        fs.write(fs.mknod(d, b"new", stat.S_IFREG | 0o644).ino, 0, b"hello")
        fs.commit(image=b"c")
        nodes = total_nodes(engine, b"c")
        loads, changes = diff_cost(engine)
        assert {(c.kind, c.path) for c in changes} == {
            (ENTRY, b""), (ENTRY, b"dir017"), (WHITEOUT, b"dir017/file005"), (ENTRY, b"dir017/new")}
        assert nodes > 100
        assert loads <= 40, (loads, nodes)
        check_applies(engine)
    finally:
        engine.close()


def test_an_in_place_change_reads_metadata_not_block_maps():
    engine = new_engine(128 << 20)
    try:
        fs = big_image(engine)
        f = fs.lookup(fs.lookup(ROOT, b"dir003"), b"file007")
        fs.write(f, 0, b"rewritten")
        big = fs.lookup(ROOT, b"big")
        fs.write(big, 5 << 20, b"\2" * 4096)
        fs.commit(image=b"c")
        nodes = total_nodes(engine, b"c")
        loads, changes = diff_cost(engine)
        assert {(c.kind, c.path) for c in changes} == {
            (ENTRY, b""), (ENTRY, b"dir003"), (ENTRY, b"dir003/file007"), (ENTRY, b"big")}
        # the search for the names of changed files skips the big file's block map
        block_map_leaves = (16 << 20) // 4096 * 57 // 4064
        assert loads < nodes - block_map_leaves // 2, (loads, nodes)
        check_applies(engine)
    finally:
        engine.close()


def test_no_change_reads_no_node():
    engine = new_engine()
    try:
        fs = big_image(engine, dirs=3, files=3)
        fs.commit(image=b"c")
        loads, changes = diff_cost(engine)
        assert (loads, changes) == (0, [])
    finally:
        engine.close()
