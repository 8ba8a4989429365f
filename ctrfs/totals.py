"""An image's recorded figures: the sum of its regular files' sizes and its inode count,
kept in its snapshot entry (format/items.py SnapEntry) for `ctrfs images`.  Counted by one
scan of the FS tree, at the commit that makes the image, at a clone into an image, and
by fsck when it puts a wrong entry right."""
import stat

from .format import constants as C
from .format.items import NAMESPACE_END, key_type, unpack_inode


def tree_totals(tree):
    """(logical bytes, inodes) of an FS tree: every inode item counts (orphans too), a
    hardlinked file's size once."""
    size = count = 0
    for key, val in tree.scan(b"", NAMESPACE_END):
        if key_type(key) == C.ITEM_INODE:
            count += 1
            fields, _inline = unpack_inode(val)
            if stat.S_ISREG(fields[0]):
                size += fields[5]
    return size, count
