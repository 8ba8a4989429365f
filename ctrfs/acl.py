"""POSIX ACLs as Linux file systems keep them (fs/posix_acl.c, ext4): pure functions over
the xattr values of system.posix_acl_access / system.posix_acl_default and the mode.

An ACL is a tuple of entries (tag, id, perm), sorted by (tag, id) as the kernel and libacl
keep them.  The mode's permission bits are part of the access ACL: user::, group:: (or the
mask, when there is one) and other:: are the mode's three triples, so an ACL that has only
those three entries is the mode itself and is not stored."""
import errno
import stat

from .errors import FsError
from .format import constants as C
from .format.acl import ACL_ENTRY, ACL_ENTRY_SIZE, ACL_HEADER, ACL_HEADER_SIZE

ACCESS = b"system.posix_acl_access"
DEFAULT = b"system.posix_acl_default"
NAMES = (ACCESS, DEFAULT)
_NAMED = (C.ACL_USER, C.ACL_GROUP)
_ORDER = {tag: i for i, tag in enumerate(C.ACL_TAGS)}    # the order entries must come in


def _invalid(why):
    return FsError(errno.EINVAL, f"invalid ACL: {why}")


def parse(value):
    """The entries of an ACL xattr value; FsError(EINVAL) unless it is a valid ACL: version 2,
    whole entries, known tags, perms in 0..7, one USER_OBJ, GROUP_OBJ and OTHER, a MASK
    when there are named entries (at most one in any case), named entries unique, everything
    in (tag, id) order.  An empty value, or a header without entries, is no ACL: ()."""
    value = bytes(value)
    if not value:
        return ()
    if len(value) < ACL_HEADER_SIZE or (len(value) - ACL_HEADER_SIZE) % ACL_ENTRY_SIZE:
        raise _invalid("length")
    if ACL_HEADER.unpack_from(value)[0] != C.ACL_EA_VERSION:
        raise _invalid("version")
    entries = []
    for tag, perm, id_ in ACL_ENTRY.iter_unpack(value[ACL_HEADER_SIZE:]):
        if tag not in _ORDER:
            raise _invalid(f"tag {tag:#x}")
        if perm & ~C.ACL_PERM_BITS:
            raise _invalid(f"perm {perm:#o}")
        if tag in _NAMED and id_ == C.ACL_UNDEFINED_ID:
            raise _invalid("named entry without an id")     # (uid_t)-1 is no user
        entries.append((tag, id_ if tag in _NAMED else C.ACL_UNDEFINED_ID, perm))
    if entries:
        check(entries)
    return tuple(entries)


def check(entries):
    """FsError(EINVAL) unless entries form a valid ACL (see parse)."""
    keys = [(_ORDER.get(t, -1), i if t in _NAMED else 0) for t, i, _p in entries]
    if keys != sorted(set(keys)):
        raise _invalid("entries unsorted or repeated")
    tags = [t for t, _i, _p in entries]
    if any(tags.count(t) != 1 for t in (C.ACL_USER_OBJ, C.ACL_GROUP_OBJ, C.ACL_OTHER)):
        raise _invalid("USER_OBJ, GROUP_OBJ and OTHER are required once each")
    if any(t in _NAMED for t in tags) and C.ACL_MASK not in tags:
        raise _invalid("named entries without MASK")


def encode(entries):
    """The xattr value of entries (ids of unnamed entries written as ACL_UNDEFINED_ID)."""
    out = bytearray(ACL_HEADER.pack(C.ACL_EA_VERSION))
    for tag, id_, perm in entries:
        out += ACL_ENTRY.pack(tag, perm, id_ if tag in _NAMED else C.ACL_UNDEFINED_ID)
    return bytes(out)


def from_mode(mode):
    """The minimal ACL of a mode (what getfacl shows for a file without an ACL)."""
    u = C.ACL_UNDEFINED_ID
    return ((C.ACL_USER_OBJ, u, (mode >> 6) & 7), (C.ACL_GROUP_OBJ, u, (mode >> 3) & 7),
            (C.ACL_OTHER, u, mode & 7))


def is_minimal(entries):
    """Only USER_OBJ, GROUP_OBJ and OTHER: the ACL says no more than the mode (a MASK alone
    still counts as extended, as posix_acl_equiv_mode has it)."""
    return len(entries) == 3


def mode_of(entries, mode):
    """mode with its permission bits taken from the access ACL: user::, the mask if there is
    one, else group::, and other::."""
    perms = {t: p for t, _i, p in entries if t not in _NAMED}
    group = perms.get(C.ACL_MASK, perms[C.ACL_GROUP_OBJ])
    bits = perms[C.ACL_USER_OBJ] << 6 | group << 3 | perms[C.ACL_OTHER]
    return mode & ~0o777 | bits


def chmod(entries, mode):
    """The access ACL after chmod(mode): user:: and other:: take the mode's triples, and the
    mask (or group:: when there is no mask) the group triple; named entries stay."""
    has_mask = any(t == C.ACL_MASK for t, _i, _p in entries)
    triple = {C.ACL_USER_OBJ: (mode >> 6) & 7, C.ACL_OTHER: mode & 7,
              C.ACL_MASK if has_mask else C.ACL_GROUP_OBJ: (mode >> 3) & 7}
    return tuple((t, i, triple.get(t, p)) for t, i, p in entries)


def inherit(default, mode):
    """What a new inode created with mode in a directory with this default ACL gets
    (posix_acl_create): (mode, access ACL or None when it is minimal, default ACL or None).
    The create mode and the ACL limit each other: user::, other:: and the mask (group:: when
    there is none) are ANDed with the mode's triples, and the mode takes the result.
    Directories also inherit the default ACL itself; symlinks get nothing."""
    if stat.S_ISLNK(mode):
        return mode, None, None
    has_mask = any(t == C.ACL_MASK for t, _i, _p in default)
    shift = {C.ACL_USER_OBJ: 6, C.ACL_OTHER: 0, C.ACL_MASK if has_mask else C.ACL_GROUP_OBJ: 3}
    access = tuple((t, i, p & (mode >> shift[t]) if t in shift else p) for t, i, p in default)
    mode = mode_of(access, mode)
    return (mode, None if is_minimal(access) else access,
            default if stat.S_ISDIR(mode) else None)
