"""Kernel inode numbers of a session that serves many trees.

A clone shares its image's on-disk inode numbers, so the kernel must see them apart: a
kernel inode number is the view's slot in the high bits and the on-disk inode number
below.  The session root (pyfuse3's ROOT_INODE, 1) is slot 0; views have slots from 1,
never reused while the daemon runs, so the kernel never meets a number that meant another
file before.  File handles are numbered the same way (an fs.Operations handle is its
inode number)."""
INO_BITS = 48                  # on-disk inode numbers the session can serve: below 2**48
INO_MASK = (1 << INO_BITS) - 1
MAX_SLOT = (1 << (63 - INO_BITS)) - 1      # kernel numbers stay below 2**63
SESSION_ROOT = 1


def join(slot, ino):
    return (slot << INO_BITS) | ino


def split(kino):
    """(slot, on-disk inode number)."""
    return kino >> INO_BITS, kino & INO_MASK
