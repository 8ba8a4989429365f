"""POSIX ACLs: ctrfs.acl's rules as properties, and the FileSystem keeping ACLs as ext4
does (the same behaviour through a real mount, against ext4, is tests/fuse/test_fuse_acl.py)."""
import errno
import os
import stat
import struct
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs import acl
from ctrfs.errors import FsError
from ctrfs.format import constants as C
from ctrfs.format.acl import AclEntry, AclHeader
from ctrfs.importdir import import_directory

ROOT = C.ROOT_INO
U = C.ACL_UNDEFINED_ID
perm = st.integers(0, 7)
ids = st.integers(0, 0xFFFFFFFE)


@st.composite
def acls(draw, extended=None):
    """A valid ACL; extended=True/False forces named entries/mask or none."""
    users = draw(st.lists(ids, unique=True, max_size=4))
    groups = draw(st.lists(ids, unique=True, max_size=4))
    if extended is False:
        users = groups = []
    mask = bool(users or groups) or (draw(st.booleans()) if extended is None else bool(extended))
    if extended and not (users or groups or mask):
        mask = True
    e = [(C.ACL_USER_OBJ, U, draw(perm))]
    e += [(C.ACL_USER, u, draw(perm)) for u in sorted(users)]
    e += [(C.ACL_GROUP_OBJ, U, draw(perm))]
    e += [(C.ACL_GROUP, g, draw(perm)) for g in sorted(groups)]
    e += [(C.ACL_MASK, U, draw(perm))] if mask else []
    e += [(C.ACL_OTHER, U, draw(perm))]
    return tuple(e)


modes = st.integers(0, 0o7777)


def raw(*entries, version=C.ACL_EA_VERSION):
    return struct.pack("<I", version) + b"".join(struct.pack("<HHI", t, p, i) for t, i, p in entries)


# ---- ctrfs.acl as properties ---------------------------------------------------------------------
@given(acls())
def test_encode_parse_round_trip_and_construct_agrees(entries):
    value = acl.encode(entries)
    assert acl.parse(value) == entries
    assert AclHeader.parse(value[:4]).version == C.ACL_EA_VERSION
    body = value[4:]
    assert [(e.tag, e.id, e.perm) for e in
            (AclEntry.parse(body[i:i + 8]) for i in range(0, len(body), 8))] == list(entries)


@given(st.binary(max_size=80))
def test_parse_arbitrary_bytes_is_valid_or_einval(value):
    try:
        entries = acl.parse(value)
    except FsError as exc:
        assert exc.errno == errno.EINVAL
    else:
        assert entries == () or acl.parse(acl.encode(entries)) == entries


@given(modes)
def test_minimal_acl_is_the_mode(mode):
    entries = acl.from_mode(mode)
    assert acl.is_minimal(entries)
    assert acl.mode_of(entries, mode) == mode
    assert acl.mode_of(entries, stat.S_IFREG) == stat.S_IFREG | mode & 0o777


@given(acls(extended=True), modes)
def test_extended_acl_group_bits_are_the_mask(entries, mode):
    assert not acl.is_minimal(entries)
    mask = [p for t, _i, p in entries if t == C.ACL_MASK][0]
    assert (acl.mode_of(entries, mode) >> 3) & 7 == mask
    assert acl.mode_of(entries, mode) & ~0o777 == mode & ~0o777


@given(acls(), modes)
def test_chmod_sets_the_mode_and_keeps_named_entries(entries, mode):
    after = acl.chmod(entries, mode)
    acl.check(after)
    assert acl.mode_of(after, 0) == mode & 0o777
    named = [e for e in entries if e[0] in (C.ACL_USER, C.ACL_GROUP)]
    assert [e for e in after if e[0] in (C.ACL_USER, C.ACL_GROUP)] == named
    if any(t == C.ACL_MASK for t, _i, _p in entries):       # group:: stays behind the mask
        assert [e for e in after if e[0] == C.ACL_GROUP_OBJ] == [e for e in entries if e[0] == C.ACL_GROUP_OBJ]


@given(acls(), modes, st.sampled_from([stat.S_IFREG, stat.S_IFDIR, stat.S_IFIFO, stat.S_IFLNK]))
def test_inherit(default, perms, kind):
    mode, access, dflt = acl.inherit(default, kind | perms)
    if kind == stat.S_IFLNK:
        assert (mode, access, dflt) == (kind | perms, None, None)
        return
    assert mode & ~0o777 == (kind | perms) & ~0o777
    assert mode & 0o777 & ~perms == 0                          # never more than asked for
    got = access if access is not None else acl.from_mode(mode)
    acl.check(got)
    assert acl.mode_of(got, mode) == mode                      # the ACL and the mode agree
    assert (access is None) == acl.is_minimal(default)
    # user::, other:: and the mask (or group::) are the default's limited by the create mode
    assert [(t, i) for t, i, _p in got] == [(t, i) for t, i, _p in default]
    assert all(p2 <= p1 and p2 & ~p1 == 0 for (_t, _i, p1), (_t2, _i2, p2) in zip(default, got))
    assert dflt == (default if kind == stat.S_IFDIR else None)


@pytest.mark.parametrize("value", [
    raw((C.ACL_USER_OBJ, U, 6), (C.ACL_GROUP_OBJ, U, 4), (C.ACL_OTHER, U, 4), version=1),  # version
    raw((C.ACL_USER_OBJ, U, 6), (C.ACL_GROUP_OBJ, U, 4), (C.ACL_OTHER, U, 4)) + b"\0",      # length
    b"\x02\x00",                                                                           # short
    raw((C.ACL_USER_OBJ, U, 6), (C.ACL_USER, 9, 6), (C.ACL_USER, 8, 6), (C.ACL_GROUP_OBJ, U, 4),
        (C.ACL_MASK, U, 6), (C.ACL_OTHER, U, 4)),                                          # unsorted
    raw((C.ACL_USER_OBJ, U, 6), (C.ACL_USER, 8, 6), (C.ACL_USER, 8, 4), (C.ACL_GROUP_OBJ, U, 4),
        (C.ACL_MASK, U, 6), (C.ACL_OTHER, U, 4)),                                          # duplicate
    raw((C.ACL_GROUP_OBJ, U, 4), (C.ACL_OTHER, U, 4)),                                     # no USER_OBJ
    raw((C.ACL_USER_OBJ, U, 6), (C.ACL_OTHER, U, 4)),                                      # no GROUP_OBJ
    raw((C.ACL_USER_OBJ, U, 6), (C.ACL_GROUP_OBJ, U, 4)),                                  # no OTHER
    raw((C.ACL_USER_OBJ, U, 6), (C.ACL_USER, 8, 6), (C.ACL_GROUP_OBJ, U, 4), (C.ACL_OTHER, U, 4)),  # no MASK
    raw((C.ACL_USER_OBJ, U, 6), (C.ACL_GROUP_OBJ, U, 4), (0x40, U, 4), (C.ACL_OTHER, U, 4)),        # tag
    raw((C.ACL_USER_OBJ, U, 8), (C.ACL_GROUP_OBJ, U, 4), (C.ACL_OTHER, U, 4)),                      # perm
    raw((C.ACL_USER_OBJ, U, 6), (C.ACL_USER, U, 6), (C.ACL_GROUP_OBJ, U, 4), (C.ACL_MASK, U, 6),
        (C.ACL_OTHER, U, 4)),                                                              # uid -1
])
def test_malformed_is_einval(value):
    with pytest.raises(FsError) as exc:
        acl.parse(value)
    assert exc.value.errno == errno.EINVAL


# ---- the FileSystem -------------------------------------------------------------------------------
def ext(*named, user=6, group=4, mask=6, other=4):
    """An extended access ACL value: named = (tag, id, perm) entries."""
    return acl.encode(((C.ACL_USER_OBJ, U, user), *[e for e in named if e[0] == C.ACL_USER],
                       (C.ACL_GROUP_OBJ, U, group), *[e for e in named if e[0] == C.ACL_GROUP],
                       *([(C.ACL_MASK, U, mask)] if mask is not None else []), (C.ACL_OTHER, U, other)))


def errno_of(fn, *args, **kw):
    with pytest.raises(FsError) as exc:
        fn(*args, **kw)
    return exc.value.errno


def test_minimal_access_acl_folds_into_the_mode(fs):
    f = fs.mknod(ROOT, b"f", stat.S_IFREG | 0o600).ino
    fs.setxattr(f, acl.ACCESS, acl.encode(acl.from_mode(0o754)))
    assert fs.getattr(f).mode == stat.S_IFREG | 0o754
    assert errno_of(fs.getxattr, f, acl.ACCESS) == errno.ENODATA
    assert acl.ACCESS not in fs.listxattr(f)


def test_extended_acl_kept_mask_shown_chmod_updates_it(mounted):
    fs = mounted.fs
    f = fs.mknod(ROOT, b"f", stat.S_IFREG | 0o644 | stat.S_ISUID).ino
    value = ext((C.ACL_USER, 1000, 7), group=4, mask=5, other=0)
    fs.setxattr(f, acl.ACCESS, value)
    assert fs.getattr(f).mode == stat.S_IFREG | stat.S_ISUID | 0o650
    assert fs.getxattr(f, acl.ACCESS) == value and fs.listxattr(f) == [acl.ACCESS]
    fs.setattr(f, mode=0o700)
    assert fs.getxattr(f, acl.ACCESS) == ext((C.ACL_USER, 1000, 7), user=7, group=4, mask=0, other=0)
    # a minimal ACL replaces the stored one and goes away
    fs.setxattr(f, acl.ACCESS, acl.encode(acl.from_mode(0o640)))
    assert fs.getattr(f).mode & 0o7777 == 0o640 and fs.listxattr(f) == []
    # a MASK alone is extended too (posix_acl_equiv_mode); chmod without a mask sets group::
    fs.setxattr(f, acl.ACCESS, ext(mask=2))
    assert fs.getattr(f).mode & 0o777 == 0o624 and fs.listxattr(f) == [acl.ACCESS]
    fs.removexattr(f, acl.ACCESS)                    # the mode stays as it is
    assert fs.getattr(f).mode & 0o777 == 0o624
    fs.removexattr(f, acl.ACCESS)                    # and removing nothing succeeds, as on ext4
    fs.setxattr(f, acl.ACCESS, ext(mask=7))
    fs.commit()
    fs = mounted.reopen()
    assert fs.getxattr(f, acl.ACCESS) == ext(mask=7) and fs.getattr(f).mode & 0o777 == 0o674


def test_set_acl_errors(fs):
    f = fs.mknod(ROOT, b"f", stat.S_IFREG | 0o644).ino
    link = fs.symlink(ROOT, b"l", b"f").ino
    good = acl.encode(acl.from_mode(0o644))
    assert errno_of(fs.setxattr, f, acl.DEFAULT, good) == errno.EACCES        # as the kernel says
    assert errno_of(fs.setxattr, link, acl.ACCESS, good) == errno.EOPNOTSUPP
    assert errno_of(fs.setxattr, f, acl.ACCESS, b"\x01\0\0\0" + good[4:]) == errno.EINVAL
    assert errno_of(fs.setxattr, f, acl.ACCESS, ext((C.ACL_USER, 1, 7), mask=None)) == errno.EINVAL
    assert fs.getattr(f).mode & 0o7777 == 0o644 and fs.listxattr(f) == []
    fs.setxattr(f, acl.ACCESS, b"")                 # an empty value removes (nothing here)
    assert fs.listxattr(f) == []


def test_kill_sgid_drops_set_group_id(fs):
    f = fs.mknod(ROOT, b"f", stat.S_IFREG | 0o2775).ino
    fs.setxattr(f, acl.ACCESS, acl.encode(acl.from_mode(0o775)))
    assert fs.getattr(f).mode & 0o7777 == 0o2775
    fs.setxattr(f, acl.ACCESS, acl.encode(acl.from_mode(0o775)), kill_sgid=True)
    assert fs.getattr(f).mode & 0o7777 == 0o775


def test_default_acl_inherited(fs):
    d = fs.mkdir(ROOT, b"d", 0o755).ino
    default = ext((C.ACL_USER, 1000, 7), (C.ACL_GROUP, 50, 6), user=7, group=5, mask=7, other=5)
    fs.setxattr(d, acl.DEFAULT, default)
    assert fs.getattr(d).mode & 0o777 == 0o755          # a default ACL leaves the mode alone
    f = fs.mknod(d, b"f", stat.S_IFREG | 0o640).ino
    assert fs.getattr(f).mode & 0o777 == 0o640
    assert fs.getxattr(f, acl.ACCESS) == ext((C.ACL_USER, 1000, 7), (C.ACL_GROUP, 50, 6),
                                             user=6, group=5, mask=4, other=0)
    assert sorted(fs.listxattr(f)) == [acl.ACCESS]
    sub = fs.mkdir(d, b"sub", 0o777).ino
    assert fs.getattr(sub).mode & 0o777 == 0o775
    assert fs.getxattr(sub, acl.DEFAULT) == default
    assert fs.getxattr(sub, acl.ACCESS) == default        # 0777 masks nothing
    deeper = fs.mknod(sub, b"p", stat.S_IFIFO | 0o600).ino
    assert fs.getattr(deeper).mode == stat.S_IFIFO | 0o600 and fs.listxattr(deeper) == [acl.ACCESS]
    link = fs.symlink(d, b"l", b"f").ino
    assert fs.listxattr(link) == [] and fs.getattr(link).mode & 0o777 == 0o777
    # a minimal default ACL is kept (unlike an access ACL) and gives only a mode
    fs.setxattr(d, acl.DEFAULT, acl.encode(acl.from_mode(0o751)))
    assert fs.getxattr(d, acl.DEFAULT) == acl.encode(acl.from_mode(0o751))
    g = fs.mknod(d, b"g", stat.S_IFREG | 0o666).ino
    assert fs.getattr(g).mode & 0o777 == 0o640 and fs.listxattr(g) == []


def test_import_directory_keeps_the_sources_acls(fs, tmp_path):
    """importdir copies ACLs as xattrs; what a default ACL where the copy lands adds to an
    entry that has no ACL in the source is taken away again."""
    src = tmp_path / "src"
    (src / "shared").mkdir(parents=True)
    subprocess.run(["setfacl", "-m", "d:u:1000:rwx,u:1000:rx", str(src / "shared")], check=True)
    (src / "shared" / "inherits").write_text("a")
    (src / "plain").write_text("b")
    os.chmod(src / "plain", 0o640)
    fs.setxattr(ROOT, acl.DEFAULT, ext((C.ACL_USER, 7, 7), user=7, group=7, mask=7, other=7))
    import_directory(fs, str(src))
    for path, ino in ((src, ROOT), (src / "plain", fs.lookup(ROOT, b"plain")),
                      (src / "shared", fs.lookup(ROOT, b"shared")),
                      (src / "shared" / "inherits", fs.lookup(fs.lookup(ROOT, b"shared"), b"inherits"))):
        want = {n.encode(): os.getxattr(path, n) for n in os.listxattr(path)}
        assert {n: fs.getxattr(ino, n) for n in fs.listxattr(ino)} == want, path
        assert fs.getattr(ino).mode == os.lstat(path).st_mode, path
    assert acl.ACCESS in fs.listxattr(fs.lookup(fs.lookup(ROOT, b"shared"), b"inherits"))
