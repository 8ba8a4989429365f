"""Hardlinks: many names, one inode.  A write through one name is seen through every other,
before and after commit, across reopen and clone; nlink stays right through unlink, rename
over a link, and links across directories."""
import errno
import stat

import pytest

from ctrfs.errors import FsError
from ctrfs.format import constants as C

ROOT = C.ROOT_INO
BS = 4096


def names_of(fs, ino, dirs):
    """Every (dir, name) in `dirs` that names `ino`."""
    return sorted((d, n) for d in dirs for n, i, _c in fs.readdir(d) if i == ino)


def make_links(fs, count=5):
    """/f plus links to it in / and in two subdirectories; returns (ino, dirs, names)."""
    d1 = fs.mkdir(ROOT, b"d1", 0o755).ino
    d2 = fs.mkdir(d1, b"d2", 0o755).ino
    ino = fs.mknod(ROOT, b"f", stat.S_IFREG | 0o644).ino
    names = [(ROOT, b"f")]
    for k in range(1, count):
        parent = (ROOT, d1, d2)[k % 3]
        fs.link(ino, parent, b"link%d" % k)
        names.append((parent, b"link%d" % k))
    return ino, [ROOT, d1, d2], names


def check_all_names(fs, ino, dirs, names, content):
    assert names_of(fs, ino, dirs) == sorted(names)
    for parent, name in names:
        assert fs.lookup(parent, name) == ino
    a = fs.getattr(ino)
    assert a.nlink == len(names)
    assert a.size == len(content)
    assert fs.read(ino, 0, len(content) + 1) == content


def test_write_through_one_name_seen_through_all(mounted):
    fs = mounted.fs
    ino, dirs, names = make_links(fs)
    content = bytearray()
    for step, (parent, name) in enumerate(names):
        via = fs.lookup(parent, name)
        data = bytes([step + 1]) * 3000
        fs.write(via, step * 2000, data)                 # inline at first, then blocks
        content[step * 2000:step * 2000 + 3000] = data
        check_all_names(fs, ino, dirs, names, bytes(content))
    fs.commit()
    check_all_names(fs, ino, dirs, names, bytes(content))
    fs = mounted.reopen()
    check_all_names(fs, ino, dirs, names, bytes(content))
    # and after a restart, writes through one name still reach the others
    fs.write(fs.lookup(*names[-1]), 0, b"Z" * BS)
    content[0:BS] = b"Z" * BS
    check_all_names(fs, ino, dirs, names, bytes(content))


def test_uncommitted_links_are_lost_together_on_crash(mounted):
    fs = mounted.fs
    ino, dirs, names = make_links(fs, 3)
    fs.write(ino, 0, b"committed")
    fs.commit()
    fs.link(ino, ROOT, b"late")
    fs.write(ino, 0, b"lost!!!!!")
    fs = mounted.reopen()                                # no commit: back to the checkpoint
    check_all_names(fs, ino, dirs, names, b"committed")
    with pytest.raises(FsError) as e:
        fs.lookup(ROOT, b"late")
    assert e.value.errno == errno.ENOENT


def test_links_survive_clone(mounted):
    fs = mounted.fs
    ino, dirs, names = make_links(fs, 4)
    fs.write(ino, 0, b"a" * 10000)
    fs = mounted.clone(b"img", b"work")
    check_all_names(fs, ino, dirs, names, b"a" * 10000)
    # copy-up of one block through one name: every name of the clone sees it, the image not
    fs.write(fs.lookup(dirs[1], b"link1"), BS, b"b" * 10)
    want = b"a" * BS + b"b" * 10 + b"a" * (10000 - BS - 10)
    check_all_names(fs, ino, dirs, names, want)
    image = mounted.image(b"img")
    check_all_names(image, ino, dirs, names, b"a" * 10000)
    # new links in the clone; unlink of an inherited one
    fs.link(ino, dirs[2], b"new")
    fs.unlink(ROOT, b"f")
    names2 = [n for n in names if n != (ROOT, b"f")] + [(dirs[2], b"new")]
    check_all_names(fs, ino, dirs, names2, want)
    fs.commit()
    fs = mounted.reopen()
    check_all_names(fs, ino, dirs, names2, want)
    check_all_names(mounted.image(b"img"), ino, dirs, names, b"a" * 10000)
    # a clone of the clone still shares one inode between the names
    fs = mounted.clone(b"img2", b"work2")
    check_all_names(fs, ino, dirs, names2, want)


def test_nlink_through_unlink_and_rename(mounted):
    fs = mounted.fs
    ino, dirs, names = make_links(fs, 4)
    fs.write(ino, 0, b"data")
    other = fs.mknod(ROOT, b"other", stat.S_IFREG | 0o600).ino
    fs.write(other, 0, b"other")

    fs.unlink(*names[1])                                 # 4 -> 3 names
    names.remove(names[1])
    check_all_names(fs, ino, dirs, names, b"data")

    # rename one link over another link of the same inode: nothing happens (POSIX)
    fs.rename(names[0][0], names[0][1], names[1][0], names[1][1])
    check_all_names(fs, ino, dirs, names, b"data")

    # rename another file over a link: that name now names the other file
    fs.rename(ROOT, b"other", names[1][0], names[1][1])
    victim = names.pop(1)
    check_all_names(fs, ino, dirs, names, b"data")
    assert fs.lookup(*victim) == other and fs.getattr(other).nlink == 1

    # rename a link over another file: the other file is gone, the link moves
    fs.rename(names[0][0], names[0][1], victim[0], victim[1])
    names[0] = victim
    check_all_names(fs, ino, dirs, names, b"data")
    with pytest.raises(FsError) as e:
        fs.getattr(other)
    assert e.value.errno == errno.ENOENT

    # RENAME_EXCHANGE between a link and a directory keeps the counts
    e_ino = fs.mkdir(ROOT, b"e", 0o755).ino
    fs.rename(names[0][0], names[0][1], ROOT, b"e", 2)
    assert fs.lookup(*victim) == e_ino
    assert fs.parent_of(e_ino) == victim[0]
    names[0] = (ROOT, b"e")
    check_all_names(fs, ino, dirs, names, b"data")

    fs.commit()
    fs = mounted.reopen()
    check_all_names(fs, ino, dirs, names, b"data")
    for parent, name in names[:-1]:
        fs.unlink(parent, name)
    check_all_names(fs, ino, dirs, names[-1:], b"data")
    fs.unlink(*names[-1])
    with pytest.raises(FsError) as e:
        fs.getattr(ino)
    assert e.value.errno == errno.ENOENT


def test_link_keeps_attributes_and_xattrs_shared(mounted):
    fs = mounted.fs
    ino = fs.mknod(ROOT, b"f", stat.S_IFREG | 0o644).ino
    fs.link(ino, ROOT, b"g")
    fs.setxattr(fs.lookup(ROOT, b"g"), b"user.k", b"v")
    fs.setattr(fs.lookup(ROOT, b"f"), mode=0o600, uid=7)
    fs.commit()
    fs = mounted.clone(b"i", b"w")
    for name in (b"f", b"g"):
        via = fs.lookup(ROOT, name)
        assert via == ino
        a = fs.getattr(via)
        assert (stat.S_IMODE(a.mode), a.uid, a.nlink) == (0o600, 7, 2)
        assert fs.getxattr(via, b"user.k") == b"v"


def test_link_errors(mounted):
    fs = mounted.fs
    ino = fs.mknod(ROOT, b"f", stat.S_IFREG | 0o644).ino
    d = fs.mkdir(ROOT, b"d", 0o755).ino
    for args, err in [((d, ROOT, b"dl"), errno.EPERM),          # no links to directories
                      ((ino, ROOT, b"d"), errno.EEXIST),
                      ((ino, ROOT, b"f"), errno.EEXIST),
                      ((ino, ino, b"x"), errno.ENOTDIR),
                      ((ino, ROOT, b"n" * 256), errno.ENAMETOOLONG),
                      ((12345, ROOT, b"x"), errno.ENOENT)]:
        with pytest.raises(FsError) as e:
            fs.link(*args)
        assert e.value.errno == err, args
    assert fs.getattr(ino).nlink == 1
