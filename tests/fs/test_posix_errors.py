"""POSIX behaviour of the FS layer as a local Linux file system shows it: every errno case,
xattr limits, sparse files, inode numbers, readdir cookies and unlinked-but-open files."""
import errno
import os
import stat

import pytest

from ctrfs import acl
from ctrfs.errors import FsError
from ctrfs.filesystem import FileSystem, RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE
from ctrfs.format import constants as C
from ctrfs.format.items import unpack_ca
from ctrfs.format.node import max_item

ROOT = C.ROOT_INO
BS = 4096
REG = stat.S_IFREG | 0o644
LONG = b"x" * 256
MAXNAME = b"y" * 255


def err(fn, *args, **kw):
    with pytest.raises(FsError) as e:
        fn(*args, **kw)
    return errno.errorcode[e.value.errno]


@pytest.fixture
def tree(fs):
    """/f (file, 5 bytes), /d/ (dir holding /d/g), /e/ (empty dir), /l -> f (symlink)."""
    ino = dict(root=ROOT)
    ino["f"] = fs.mknod(ROOT, b"f", REG).ino
    fs.write(ino["f"], 0, b"hello")
    ino["d"] = fs.mkdir(ROOT, b"d", 0o755).ino
    ino["g"] = fs.mknod(ino["d"], b"g", REG).ino
    ino["e"] = fs.mkdir(ROOT, b"e", 0o755).ino
    ino["l"] = fs.symlink(ROOT, b"l", b"f").ino
    return ino


# ---- the errno table of issue 4 point 6 ----------------------------------------------------------
CASES = {
    # ENOENT
    "lookup missing": ("ENOENT", lambda fs, i: fs.lookup(ROOT, b"nope")),
    "getattr missing ino": ("ENOENT", lambda fs, i: fs.getattr(999999)),
    "unlink missing": ("ENOENT", lambda fs, i: fs.unlink(ROOT, b"nope")),
    "rmdir missing": ("ENOENT", lambda fs, i: fs.rmdir(ROOT, b"nope")),
    "rename missing source": ("ENOENT", lambda fs, i: fs.rename(ROOT, b"nope", ROOT, b"x")),
    "exchange missing target": ("ENOENT", lambda fs, i: fs.rename(ROOT, b"f", ROOT, b"nope", RENAME_EXCHANGE)),
    "create in missing dir": ("ENOENT", lambda fs, i: fs.mknod(999999, b"x", REG)),
    "symlink empty target": ("ENOENT", lambda fs, i: fs.symlink(ROOT, b"x", b"")),
    "link missing inode": ("ENOENT", lambda fs, i: fs.link(999999, ROOT, b"x")),
    # EEXIST
    "mknod existing": ("EEXIST", lambda fs, i: fs.mknod(ROOT, b"f", REG)),
    "mkdir existing file": ("EEXIST", lambda fs, i: fs.mkdir(ROOT, b"f", 0o755)),
    "mkdir existing dir": ("EEXIST", lambda fs, i: fs.mkdir(ROOT, b"d", 0o755)),
    "symlink existing": ("EEXIST", lambda fs, i: fs.symlink(ROOT, b"l", b"t")),
    "link existing": ("EEXIST", lambda fs, i: fs.link(i["f"], ROOT, b"e")),
    "noreplace existing": ("EEXIST", lambda fs, i: fs.rename(ROOT, b"f", ROOT, b"l", RENAME_NOREPLACE)),
    "noreplace before EINVAL": ("EEXIST", lambda fs, i: fs.rename(ROOT, b"d", i["d"], b"g", RENAME_NOREPLACE)),
    # ENOTEMPTY
    "rmdir non-empty": ("ENOTEMPTY", lambda fs, i: fs.rmdir(ROOT, b"d")),
    "rename dir over non-empty dir": ("ENOTEMPTY", lambda fs, i: fs.rename(ROOT, b"e", ROOT, b"d")),
    "rename over own ancestor": ("ENOTEMPTY", lambda fs, i: fs.rename(i["d"], b"g", ROOT, b"d")),
    # EISDIR
    "unlink dir": ("EISDIR", lambda fs, i: fs.unlink(ROOT, b"d")),
    "rename file over dir": ("EISDIR", lambda fs, i: fs.rename(ROOT, b"f", ROOT, b"e")),
    "write dir": ("EISDIR", lambda fs, i: fs.write(i["d"], 0, b"x")),
    "read dir": ("EISDIR", lambda fs, i: fs.read(i["d"], 0, 10)),
    "truncate dir": ("EISDIR", lambda fs, i: fs.setattr(i["d"], size=0)),
    # ENOTDIR
    "rmdir file": ("ENOTDIR", lambda fs, i: fs.rmdir(ROOT, b"f")),
    "rmdir symlink": ("ENOTDIR", lambda fs, i: fs.rmdir(ROOT, b"l")),
    "rename dir over file": ("ENOTDIR", lambda fs, i: fs.rename(ROOT, b"e", ROOT, b"f")),
    "lookup in file": ("ENOTDIR", lambda fs, i: fs.lookup(i["f"], b"x")),
    "create in file": ("ENOTDIR", lambda fs, i: fs.mknod(i["f"], b"x", REG)),
    "mkdir in file": ("ENOTDIR", lambda fs, i: fs.mkdir(i["f"], b"x", 0o755)),
    "readdir file": ("ENOTDIR", lambda fs, i: list(fs.readdir(i["f"]))),
    "rename into file": ("ENOTDIR", lambda fs, i: fs.rename(ROOT, b"f", i["f"], b"x")),
    # ENAMETOOLONG (256 bytes; 255 is fine, below)
    "lookup long": ("ENAMETOOLONG", lambda fs, i: fs.lookup(ROOT, LONG)),
    "mknod long": ("ENAMETOOLONG", lambda fs, i: fs.mknod(ROOT, LONG, REG)),
    "mkdir long": ("ENAMETOOLONG", lambda fs, i: fs.mkdir(ROOT, LONG, 0o755)),
    "symlink long": ("ENAMETOOLONG", lambda fs, i: fs.symlink(ROOT, LONG, b"t")),
    "symlink long target": ("ENAMETOOLONG", lambda fs, i: fs.symlink(ROOT, b"x", b"t" * 4096)),
    "link long": ("ENAMETOOLONG", lambda fs, i: fs.link(i["f"], ROOT, LONG)),
    "unlink long": ("ENAMETOOLONG", lambda fs, i: fs.unlink(ROOT, LONG)),
    "rmdir long": ("ENAMETOOLONG", lambda fs, i: fs.rmdir(ROOT, LONG)),
    "rename long target": ("ENAMETOOLONG", lambda fs, i: fs.rename(ROOT, b"f", ROOT, LONG)),
    "rename long source": ("ENAMETOOLONG", lambda fs, i: fs.rename(ROOT, LONG, ROOT, b"x")),
    # EINVAL
    "rename dir into itself": ("EINVAL", lambda fs, i: fs.rename(ROOT, b"d", i["d"], b"x")),
    "rename dir into own child": ("EINVAL", lambda fs, i: _into_child(fs, i)),
    "exchange with own ancestor": ("EINVAL", lambda fs, i: fs.rename(i["d"], b"g", ROOT, b"d", RENAME_EXCHANGE)),
    "rename both flags": ("EINVAL", lambda fs, i: fs.rename(ROOT, b"f", ROOT, b"e", RENAME_EXCHANGE | RENAME_NOREPLACE)),
    "readlink of file": ("EINVAL", lambda fs, i: fs.readlink(i["f"])),
    "truncate symlink": ("EINVAL", lambda fs, i: fs.setattr(i["l"], size=0)),
    "mknod a directory": ("EINVAL", lambda fs, i: fs.mknod(ROOT, b"x", stat.S_IFDIR | 0o755)),
    # EPERM
    "link a directory": ("EPERM", lambda fs, i: fs.link(i["d"], ROOT, b"x")),
    # "." and "..": what Linux answers for them
    "mkdir dot": ("EEXIST", lambda fs, i: fs.mkdir(ROOT, b".", 0o755)),
    "mknod dotdot": ("EEXIST", lambda fs, i: fs.mknod(i["d"], b"..", REG)),
    "link dotdot": ("EEXIST", lambda fs, i: fs.link(i["f"], i["d"], b"..")),
    "symlink dot": ("EEXIST", lambda fs, i: fs.symlink(ROOT, b".", b"t")),
    "unlink dot": ("EISDIR", lambda fs, i: fs.unlink(i["d"], b".")),
    "unlink dotdot": ("EISDIR", lambda fs, i: fs.unlink(i["d"], b"..")),
    "rmdir dot": ("EINVAL", lambda fs, i: fs.rmdir(i["e"], b".")),
    "rmdir dotdot": ("ENOTEMPTY", lambda fs, i: fs.rmdir(i["e"], b"..")),
    "rmdir dotdot of root": ("ENOTEMPTY", lambda fs, i: fs.rmdir(ROOT, b"..")),
    "rename from dotdot": ("EBUSY", lambda fs, i: fs.rename(i["d"], b"..", ROOT, b"x")),
    "rename from dot": ("EBUSY", lambda fs, i: fs.rename(i["d"], b".", ROOT, b"x")),
    "rename to dotdot": ("EBUSY", lambda fs, i: fs.rename(ROOT, b"f", i["d"], b"..")),
    "rename noreplace to dot": ("EEXIST", lambda fs, i: fs.rename(ROOT, b"f", i["d"], b".", RENAME_NOREPLACE)),
    "create empty name": ("ENOENT", lambda fs, i: fs.mknod(ROOT, b"", REG)),
    # file data only in regular files
    "write symlink": ("EINVAL", lambda fs, i: fs.write(i["l"], 0, b"x")),
    "read symlink": ("EINVAL", lambda fs, i: fs.read(i["l"], 0, 1)),
    "write fifo": ("EINVAL", lambda fs, i: fs.write(fs.mknod(ROOT, b"fifo", stat.S_IFIFO | 0o644).ino, 0, b"x")),
    # a directory removed while open takes no new names
    "create in removed dir": ("ENOENT", lambda fs, i: _in_removed_dir(fs, i, fs.mknod, b"x", REG)),
    "mkdir in removed dir": ("ENOENT", lambda fs, i: _in_removed_dir(fs, i, fs.mkdir, b"x", 0o755)),
    "link into removed dir": ("ENOENT", lambda fs, i: _in_removed_dir(fs, i, lambda p, n: fs.link(i["f"], p, n), b"x")),
    "rename into removed dir": ("ENOENT", lambda fs, i: _in_removed_dir(fs, i, lambda p, n: fs.rename(ROOT, b"f", p, n), b"x")),
}


def _in_removed_dir(fs, i, fn, *args):
    fs.open(i["e"])
    fs.rmdir(ROOT, b"e")
    try:
        fn(i["e"], *args)
    finally:
        assert list(fs.readdir(i["e"])) == []
        fs.release(i["e"])
        assert err(fs.getattr, i["e"]) == "ENOENT"


def _into_child(fs, i):
    sub = fs.mkdir(i["d"], b"sub", 0o755).ino
    fs.rename(ROOT, b"d", sub, b"x")


@pytest.mark.parametrize("case", sorted(CASES))
def test_errno(fs, tree, case):
    want, fn = CASES[case]
    listing = sorted(fs.readdir(ROOT))
    assert err(fn, fs, tree) == want
    if not any(w in case for w in ("child", "removed", "fifo")):
        assert sorted(fs.readdir(ROOT)) == listing        # a failed call changes nothing
        assert fs.getattr(ROOT).nlink == 4
    assert fs.read(tree["f"], 0, 10) == b"hello"
    assert fs.getattr(tree["f"]).nlink == 1
    assert fs.lookup(tree["d"], b"..") == ROOT and fs.lookup(ROOT, b"..") == ROOT


def test_longest_names_work(mounted, tree):
    fs = mounted.fs
    ino = fs.mknod(ROOT, MAXNAME, REG).ino
    d = fs.mkdir(tree["d"], MAXNAME, 0o755).ino
    fs.link(ino, tree["e"], MAXNAME)
    fs.rename(tree["d"], MAXNAME, tree["e"], b"z" * 255)
    fs.symlink(ROOT, b"s" * 255, b"t" * 4095)
    fs.commit()
    fs = mounted.reopen()
    assert fs.lookup(ROOT, MAXNAME) == fs.lookup(tree["e"], MAXNAME) == ino
    assert fs.lookup(tree["e"], b"z" * 255) == d
    assert fs.readlink(fs.lookup(ROOT, b"s" * 255)) == b"t" * 4095


# ---- renames that must work (EXDEV never) ---------------------------------------------------------
def test_rename_across_directories_and_over_targets(mounted, tree):
    fs = mounted.fs
    a = fs.mkdir(ROOT, b"a", 0o755).ino
    b = fs.mkdir(a, b"b", 0o755).ino
    fs.rename(ROOT, b"f", b, b"f2")                            # file across directories
    assert fs.lookup(b, b"f2") == tree["f"]
    fs.rename(ROOT, b"d", b, b"d")                             # dir with contents, new parent
    assert fs.parent_of(tree["d"]) == b and fs.lookup(tree["d"], b"g") == tree["g"]
    assert (fs.getattr(ROOT).nlink, fs.getattr(b).nlink) == (4, 3)
    fs.rename(ROOT, b"e", b, b"d", RENAME_EXCHANGE)            # exchange dirs of two parents
    assert fs.lookup(ROOT, b"e") == tree["d"] and fs.lookup(b, b"d") == tree["e"]
    assert fs.parent_of(tree["d"]) == ROOT and fs.parent_of(tree["e"]) == b
    empty = fs.mkdir(ROOT, b"empty", 0o755).ino
    fs.rename(b, b"d", ROOT, b"empty")                         # dir over an empty dir
    assert fs.lookup(ROOT, b"empty") == tree["e"]
    assert err(fs.getattr, empty) == "ENOENT"
    x = fs.mknod(a, b"x", REG).ino
    fs.rename(b, b"f2", a, b"x")                               # file over a file
    assert fs.lookup(a, b"x") == tree["f"] and err(fs.getattr, x) == "ENOENT"
    fs.rename(a, b"x", ROOT, b"l", RENAME_EXCHANGE)            # file <-> symlink
    assert fs.lookup(ROOT, b"l") == tree["f"] and fs.lookup(a, b"x") == tree["l"]
    fs.rename(ROOT, b"l", ROOT, b"l")                          # onto itself: nothing happens
    fs.rename(ROOT, b"l", ROOT, b"new", RENAME_NOREPLACE)
    nlinks = {ino: fs.getattr(ino).nlink for ino in (ROOT, a, b, tree["d"], tree["e"])}
    assert nlinks == {ROOT: 5, a: 3, b: 2, tree["d"]: 2, tree["e"]: 2}
    # the same after a clone: renames of inherited directories, no EXDEV anywhere
    fs = mounted.clone(b"img", b"work")
    fs.rename(ROOT, b"a", tree["d"], b"a")
    fs.rename(tree["d"], b"g", b, b"g")
    fs.commit()
    fs = mounted.reopen()
    assert fs.lookup(fs.lookup(fs.lookup(tree["d"], b"a"), b"b"), b"g") == tree["g"]
    assert {ino: fs.getattr(ino).nlink for ino in (ROOT, a, b, tree["d"])} == {ROOT: 4, a: 3, b: 2, tree["d"]: 3}


@pytest.mark.parametrize("ask_writable", [False, True])
def test_read_only_image(mounted, tree, ask_writable):
    mounted.fs.commit(image=b"img")
    image = FileSystem(mounted.engine, b"img", writable=ask_writable)   # an image never is
    assert not image.writable
    for fn, args in [(image.mknod, (ROOT, b"x", REG)), (image.write, (tree["f"], 0, b"x")),
                     (image.unlink, (ROOT, b"f")), (image.setxattr, (ROOT, b"user.a", b"")),
                     (image.rename, (ROOT, b"f", ROOT, b"g")), (image.setattr, (tree["f"],))]:
        assert err(fn, *args) == "EROFS", fn.__name__
    assert image.read(tree["f"], 0, 5) == b"hello"


def test_special_files_and_times(mounted):
    fs = mounted.fs
    kinds = {b"chr": (stat.S_IFCHR | 0o600, os.makedev(1, 3)), b"blk": (stat.S_IFBLK | 0o600, os.makedev(7, 0)),
             b"fifo": (stat.S_IFIFO | 0o644, 0), b"sock": (stat.S_IFSOCK | 0o755, 0)}
    inos = {name: fs.mknod(ROOT, name, mode, 5, 6, rdev).ino for name, (mode, rdev) in kinds.items()}
    f = fs.mknod(ROOT, b"f", REG).ino
    fs.setattr(f, atime_ns=1_234_567_890_123_456_789, mtime_ns=-5)
    fs.commit()
    fs = mounted.reopen()
    for name, (mode, rdev) in kinds.items():
        a = fs.getattr(inos[name])
        assert (a.mode, a.rdev, a.uid, a.gid, a.nlink) == (mode, rdev, 5, 6, 1)
    a = fs.getattr(f)
    assert (a.atime_ns, a.mtime_ns) == (1_234_567_890_123_456_789, -5)
    fs.write(f, 0, b"x")
    b = fs.getattr(f)
    assert b.mtime_ns > 0 and b.ctime_ns >= a.ctime_ns


# ---- xattrs -----------------------------------------------------------------------------------------
def test_xattr_errors_and_limits(mounted, tree):
    fs = mounted.fs
    f = tree["f"]
    assert err(fs.getxattr, f, b"user.none") == "ENODATA"
    assert err(fs.removexattr, f, b"user.none") == "ENODATA"
    assert err(fs.setxattr, f, b"user.a", b"v", XATTR_REPLACE) == "ENODATA"
    fs.setxattr(f, b"user.a", b"v", XATTR_CREATE)
    assert err(fs.setxattr, f, b"user.a", b"w", XATTR_CREATE) == "EEXIST"
    fs.setxattr(f, b"user.a", b"w", XATTR_REPLACE)
    assert fs.getxattr(f, b"user.a") == b"w"
    for name in (b"foo.bar", b"user", b"system.other", b"os2.x", b"userx.y"):
        assert err(fs.setxattr, f, name, b"v") == errno.errorcode[errno.EOPNOTSUPP], name
        assert err(fs.getxattr, f, name) == errno.errorcode[errno.EOPNOTSUPP], name
    assert err(fs.setxattr, f, b"user." + b"n" * 251, b"v") == "ERANGE"     # 256 bytes
    assert err(fs.getxattr, f, b"user." + b"n" * 251) == "ERANGE"
    assert err(fs.setxattr, f, b"", b"v") == "ERANGE"
    assert err(fs.setxattr, f, b"user.big", b"v" * 65537) == "E2BIG"
    # a value lives in one tree item (half a node): larger ones are ENOSPC, as on ext4
    room = max_item(mounted.engine.block_size) - 4 - 9 - len(b"user.big")
    fs.setxattr(f, b"user.big", b"v" * room)
    assert fs.getxattr(f, b"user.big") == b"v" * room
    assert err(fs.setxattr, f, b"user.big", b"v" * (room + 1)) == "ENOSPC"
    fs.removexattr(f, b"user.big")
    longest = b"user." + b"n" * 250                                          # 255 bytes
    names = [b"security.capability", b"trusted.overlay.opaque", b"user.a", longest]
    values = {n: bytes([i]) * (i * 100) for i, n in enumerate(names)}
    for n in names:
        fs.setxattr(f, n, values[n])
    # ACLs are interpreted (tests/fs/test_acl.py): an extended one is kept, as encoded
    extended = acl.encode(((C.ACL_USER_OBJ, 0, 6), (C.ACL_USER, 7, 4), (C.ACL_GROUP_OBJ, 0, 4),
                           (C.ACL_MASK, 0, 4), (C.ACL_OTHER, 0, 0)))
    fs.setxattr(f, acl.ACCESS, extended)
    names.append(acl.ACCESS)
    values[acl.ACCESS] = extended
    fs.setxattr(tree["d"], b"user.dir", b"")                                # empty value, on a dir
    fs.setxattr(tree["l"], b"trusted.sym", b"s")                            # and on a symlink
    fs.commit()
    fs = mounted.clone(b"img", b"work")
    assert sorted(fs.listxattr(f)) == sorted(names)
    for n in names:
        assert fs.getxattr(f, n) == values[n]
    assert fs.getxattr(tree["d"], b"user.dir") == b""
    assert fs.getxattr(tree["l"], b"trusted.sym") == b"s"
    fs.removexattr(f, longest)
    assert longest not in fs.listxattr(f)
    assert longest in mounted.image(b"img").listxattr(f)


def test_xattrs_go_with_the_inode(fs, tree):
    fs.setxattr(tree["f"], b"user.a", b"1")
    fs.unlink(ROOT, b"f")
    g = fs.mknod(ROOT, b"f", REG).ino
    assert fs.listxattr(g) == []
    assert err(fs.listxattr, tree["f"]) == "ENOENT"


# ---- sparse files -----------------------------------------------------------------------------------
def test_holes_read_as_zeros_and_store_nothing(mounted):
    fs, engine = mounted.fs, mounted.engine
    f = fs.mknod(ROOT, b"sparse", REG).ino
    fs.commit()
    before = dict(engine.store.stats)
    fs.setattr(f, size=1 << 30)                          # 1 GiB of hole
    fs.write(f, 5 * BS, bytes(3 * BS))                   # zeros written are holes too
    fs.write(f, (1 << 30) - 10, bytes(10))
    fs.commit()
    assert engine.store.stats["data_written"] == before["data_written"]
    assert engine.store.stats["data_deduped"] == before["data_deduped"]
    fs = mounted.reopen()
    assert fs.getattr(f).size == 1 << 30
    for off in (0, 5 * BS - 1, 123456789, (1 << 30) - 5000):
        assert fs.read(f, off, 5000) == bytes(min(5000, (1 << 30) - off))
    assert fs.read(f, 1 << 30, 10) == b""
    # one block of data in the middle: one block stored, the rest still holes
    before = dict(mounted.engine.store.stats)
    fs.write(f, 500 * BS + 7, b"data")
    fs.commit()
    assert mounted.engine.store.stats["data_written"] - before["data_written"] == 1
    assert fs.read(f, 500 * BS, BS) == bytes(7) + b"data" + bytes(BS - 11)


def test_truncate_does_not_resurrect_data(mounted):
    fs = mounted.fs
    for size in (100, 3 * BS + 100):                     # inline, and in blocks
        f = fs.mknod(ROOT, b"t%d" % size, REG).ino
        fs.write(f, 0, b"A" * size)
        for commit in (False, True):
            fs.setattr(f, size=size // 2)
            if commit:
                fs.commit()
            fs.setattr(f, size=size * 3)
            assert fs.read(f, 0, size * 3) == b"A" * (size // 2) + bytes(size * 3 - size // 2)
            fs.write(f, 0, b"A" * size)
            fs.setattr(f, size=size)
        fs.setattr(f, size=0)
        fs.setattr(f, size=BS * 2)
        assert fs.read(f, 0, BS * 2) == bytes(BS * 2)
    fs.commit()
    fs = mounted.reopen()
    assert fs.read(fs.lookup(ROOT, b"t100"), 0, 10 * BS) == bytes(BS * 2)


def test_block_to_inline_and_back(mounted):
    fs = mounted.fs
    f = fs.mknod(ROOT, b"f", REG).ino
    fs.write(f, 0, b"B" * (C.INLINE_MAX + 1))            # leaves inline mode
    fs.setattr(f, size=0)
    fs.write(f, 0, b"small")                              # inline again
    fs.commit()
    assert fs.read(f, 0, 100) == b"small"
    fs.write(f, C.INLINE_MAX, b"X")                       # one past the inline limit
    fs.commit()
    fs = mounted.reopen()
    assert fs.read(f, 0, 2 * C.INLINE_MAX) == b"small" + bytes(C.INLINE_MAX - 5) + b"X"


# ---- inode numbers -----------------------------------------------------------------------------------
def test_inode_numbers_unique_and_stable(mounted):
    fs = mounted.fs
    names = {}
    d = fs.mkdir(ROOT, b"d", 0o755).ino
    for i in range(300):
        parent = d if i % 2 else ROOT
        ind = fs.mknod(parent, b"n%d" % i, REG) if i % 3 else fs.mkdir(parent, b"n%d" % i, 0o755)
        names[(parent, b"n%d" % i)] = ind.ino
    for i in range(0, 300, 7):                            # deleted numbers are not reused
        parent = d if i % 2 else ROOT
        (fs.rmdir if i % 3 == 0 else fs.unlink)(parent, b"n%d" % i)
        del names[(parent, b"n%d" % i)]
    dead = set(range(C.FIRST_INO, max(names.values()) + 1)) - set(names.values()) - {d}
    for i in range(50):
        ino = fs.mknod(ROOT, b"m%d" % i, REG).ino
        assert ino not in dead and ino not in names.values()
        names[(ROOT, b"m%d" % i)] = ino
    assert len(set(names.values())) == len(names)
    fs.commit()
    for fs in (mounted.reopen(), mounted.clone(b"img", b"work")):
        for (parent, name), ino in names.items():
            assert fs.lookup(parent, name) == ino
            assert fs.getattr(ino).ino == ino
        listed = {(p, n): i for p in (ROOT, d) for n, i, _c in fs.readdir(p)}
        assert {k: v for k, v in listed.items() if k[1] != b"d"} == names


# ---- readdir cookies -----------------------------------------------------------------------------------
def test_readdir_cookies_stable_under_changes(fs):
    d = fs.mkdir(ROOT, b"d", 0o755).ino
    for i in range(200):
        fs.mknod(d, b"e%d" % i, REG)
    everything = list(fs.readdir(d))
    assert sorted(n for n, _i, _c in everything) == sorted(b"e%d" % i for i in range(200))
    assert list(fs.readdir(d, everything[-1][2])) == []
    first = everything[:60]
    cookie = first[-1][2]
    seen = {n for n, _i, _c in first}
    # resuming without changes returns exactly the rest
    assert list(fs.readdir(d, cookie)) == everything[60:]
    # now change the directory between two readdir calls
    removed = {b"e%d" % i for i in range(0, 200, 5)}
    for name in removed:
        fs.unlink(d, name)
    added = {b"new%d" % i for i in range(80)}
    for name in added:
        fs.mknod(d, name, REG)
    rest = [n for n, _i, _c in fs.readdir(d, cookie)]
    assert len(rest) == len(set(rest))
    assert not seen & set(rest)                            # no duplicates
    survivors = {b"e%d" % i for i in range(200)} - removed
    assert survivors - seen <= set(rest)                  # nothing that stayed is skipped
    assert set(rest) <= survivors | added                  # nothing removed comes back
    # a cookie stays valid even when the entry it came from is gone
    fs.unlink(d, first[-1][0]) if first[-1][0] not in removed else None
    assert [n for n, _i, _c in fs.readdir(d, cookie)] == rest
    # chained resumes from every cookie walk the whole directory once
    names, cookie = [], 0
    while True:
        batch = []
        for item in fs.readdir(d, cookie):
            batch.append(item)
            if len(batch) == 17:
                break
        if not batch:
            break
        names += [n for n, _i, _c in batch]
        cookie = batch[-1][2]
    assert sorted(names) == sorted(n for n, _i, _c in fs.readdir(d))
    assert len(names) == len(set(names))


# ---- unlinked open files -------------------------------------------------------------------------------
def data_blocks(engine):
    engine.commit()
    return {bytes(k) for k, v in engine.ca.scan() if unpack_ca(v)[2] == C.BLOCK_DATA}


def test_unlinked_open_file_lives_until_release(mounted):
    fs, engine = mounted.fs, mounted.engine
    baseline = data_blocks(engine)
    f = fs.mknod(ROOT, b"f", REG).ino
    fs.write(f, 0, os.urandom(5 * BS))
    fs.open(f)
    fs.open(f)
    data = fs.read(f, 0, 5 * BS)
    fs.unlink(ROOT, b"f")
    assert err(fs.lookup, ROOT, b"f") == "ENOENT"
    assert fs.getattr(f).nlink == 0
    assert fs.read(f, 0, 5 * BS) == data
    fs.write(f, 5 * BS, b"more")
    fs.commit()
    assert fs.read(f, 0, 6 * BS) == data + b"more"
    assert len(data_blocks(engine) - baseline) == 6
    fs.release(f)
    assert fs.read(f, 0, 4) == data[:4]                 # one handle still open
    fs.release(f)
    assert err(fs.getattr, f) == "ENOENT"
    assert data_blocks(mounted.engine) == baseline       # its blocks are free
    assert mounted.engine.tree(mounted.name).get(b"\0" * 8 + b"\0" + f.to_bytes(8, "big")) is None


def test_rename_over_open_file_keeps_it(fs):
    f = fs.mknod(ROOT, b"f", REG).ino
    g = fs.mknod(ROOT, b"g", REG).ino
    fs.write(f, 0, b"old")
    fs.open(f)
    fs.rename(ROOT, b"g", ROOT, b"f")
    assert fs.lookup(ROOT, b"f") == g
    assert fs.read(f, 0, 10) == b"old"
    fs.release(f)
    assert err(fs.getattr, f) == "ENOENT"


def test_open_file_with_another_name_is_not_orphaned(mounted):
    fs = mounted.fs
    f = fs.mknod(ROOT, b"f", REG).ino
    fs.link(f, ROOT, b"g")
    fs.open(f)
    fs.unlink(ROOT, b"f")
    fs.release(f)
    assert fs.getattr(f).nlink == 1
    fs.commit()
    assert mounted.reopen().lookup(ROOT, b"g") == f


def test_orphans_freed_after_crash(mounted):
    fs, engine = mounted.fs, mounted.engine
    baseline = data_blocks(engine)
    f = fs.mknod(ROOT, b"f", REG).ino
    fs.write(f, 0, os.urandom(3 * BS))
    fs.open(f)
    fs.unlink(ROOT, b"f")
    fs.commit()                                           # the orphan is on disk now
    assert len(data_blocks(engine) - baseline) == 3
    # a crash: the handle is never released; the next mount frees the orphan
    fs = mounted.reopen()
    assert err(fs.getattr, f) == "ENOENT"
    fs.commit()
    assert data_blocks(mounted.engine) == baseline
    # a clone of a tree committed with an orphan does not inherit it either
    fs = mounted.fs
    g = fs.mknod(ROOT, b"g", REG).ino
    fs.write(g, 0, b"g" * 5000)
    fs.open(g)
    fs.unlink(ROOT, b"g")
    fs = mounted.clone(b"img", b"work")
    assert err(fs.getattr, g) == "ENOENT"
