"""Corruption cases, e2fsprogs style: each damages one structure of the sample image
(byte damage: zeroes, ones, one bit, random bytes; or a valid commit that says something
false), then fsck -n must name it and exit 4 without writing, -y must repair it (exit 1),
and a second run must exit 0."""
import pytest

from ctrfs.format import constants as C
from ctrfs.testing import corrupt as K

from fsckrun import assert_fsck

HOWS = K.HOWS
FS, CA, SNAP, USAGE = C.TREE_FS, C.TREE_CA, C.TREE_SNAP, C.TREE_USAGE


def case(id_, inject, *checks):
    return pytest.param(inject, set(checks), id=id_)


CASES = [
    *[case(f"superblock-{h}", lambda img, h=h: K.corrupt_superblock(img, h), "check_superblocks")
      for h in HOWS],
    *[case(f"mirror-{h}", lambda img, h=h: K.corrupt_superblock(img, h, mirror=True), "check_superblocks")
      for h in HOWS],
    case("superblock-field-label",
         lambda img: K.set_superblock_field(img, "label", b"other".ljust(64, b"\0")), "check_superblocks"),
    case("superblock-field-segments", lambda img: K.set_superblock_field(img, "segment_count", 3),
         "check_superblocks"),
    case("mirror-field-uuid", lambda img: K.set_superblock_field(img, "uuid", bytes(16), mirror=True),
         "check_superblocks"),
    *[case(f"slot{s}-{h}", lambda img, s=s, h=h: K.corrupt_checkpoint(img, s, h), "check_checkpoints")
      for s in (0, 1) for h in HOWS],
    case("slot-newest-torn", lambda img: K.tear_checkpoint(img, K.newest_slot(img)), "check_checkpoints"),
    *[case(f"ca-node-{h}", lambda img, h=h: K.corrupt_node(img, CA, h), "check_system_trees") for h in HOWS],
    *[case(f"snap-node-{h}", lambda img, h=h: K.corrupt_node(img, SNAP, h), "check_system_trees")
      for h in HOWS],
    *[case(f"usage-node-{h}", lambda img, h=h: K.corrupt_node(img, USAGE, h), "check_system_trees")
      for h in HOWS],
    case("ca-node-header", lambda img: K.corrupt_node(img, CA, "random", part="header"),
         "check_system_trees"),
    case("ca-node-crc", lambda img: K.corrupt_node(img, CA, "bit", part="crc"), "check_system_trees"),
    *[case(f"ca-log-{h}", lambda img, h=h: K.corrupt_calog(img, h), "check_calog") for h in HOWS],
    *[case(f"fs-root-{h}", lambda img, h=h: K.corrupt_node(img, FS, h), "check_fs_trees") for h in HOWS],
    *[case(f"fs-leaf-{h}", lambda img, h=h: K.corrupt_node(img, FS, h, 2, level=0), "check_fs_trees")
      for h in HOWS],
    # The image's nodes were written one commit earlier and are shared by both checkpoints:
    # no fallback helps, the tree is rebuilt from what is readable.
    *[case(f"image-leaf-{h}", lambda img, h=h: K.corrupt_node(img, FS, h, 1, level=0, name=b"img"),
           "check_fs_trees") for h in HOWS],
    case("image-root", lambda img: K.corrupt_node(img, FS, "bit", name=b"img"), "check_fs_trees"),
    case("image-leaf-header", lambda img: K.corrupt_node(img, FS, "zeroes", 0, level=0, part="header",
                                                         name=b"img"), "check_fs_trees"),
    case("refcount-data-high", lambda img: K.wrong_refcount(img, +1), "check_refcounts"),
    case("refcount-data-low", lambda img: K.wrong_refcount(img, -1, index=3), "check_refcounts"),
    case("refcount-node-high", lambda img: K.wrong_refcount(img, +2, C.BLOCK_NODE), "check_refcounts"),
    case("refcount-node-zero", lambda img: K.wrong_refcount(img, -1, C.BLOCK_NODE), "check_refcounts"),
    case("leaked-block", K.leak_block, "check_refcounts"),
    case("shared-address", K.shared_address, "check_summaries"),
    case("usage-high", lambda img: K.wrong_usage(img, +3), "check_usage"),
    case("usage-low", lambda img: K.wrong_usage(img, -1), "check_usage"),
    *[case(f"summary-{h}", lambda img, h=h: K.corrupt_summary(img, h), "check_summaries") for h in HOWS],
    case("summary-last-unit", lambda img: K.corrupt_summary(img, "bit", -1), "check_summaries"),
    case("summary-entry", lambda img: K.summary_entry_prefix(img, 4), "check_summaries"),
    case("dangling-dirent", K.dangling_dirent, "check_orphans"),
    case("dangling-dirent-image", lambda img: K.dangling_dirent(img, name=b"img"), "check_orphans"),
    case("nlink-file-high", lambda img: K.set_nlink(img, 4, 9), "check_link_counts"),
    case("nlink-file-zero", lambda img: K.set_nlink(img, 4, 0), "check_link_counts"),
    case("nlink-dir", lambda img: K.set_nlink(img, 2, 7), "check_link_counts"),
    case("nlink-root", lambda img: K.set_nlink(img, C.ROOT_INO, 1), "check_link_counts"),
    case("unreachable-dir", lambda img: K.drop_dirent(img, C.ROOT_INO, b"dir"), "check_orphans"),
    case("unreachable-file", lambda img: K.drop_dirent(img, C.ROOT_INO, b"sym"), "check_orphans"),
    case("missing-inode", lambda img: K.drop_inode(img, 4), "check_orphans"),
    case("bad-acl", K.bad_acl, "check_inodes"),
]


@pytest.mark.parametrize("inject, checks", CASES)
def test_corruption_found_and_repaired(img, inject, checks):
    inject(img)
    assert_fsck(img, checks)


@pytest.mark.parametrize("how", HOWS)
def test_data_damage_needs_verify_data(img, how):
    K.corrupt_data(img, how, 5)
    assert_fsck(img, {"check_data"}, verify_data=True)


def test_every_case_names_a_known_check():
    from ctrfs.fsck.checks import Checker
    names = {n for n in dir(Checker) if n.startswith("check_")}
    for param in CASES:
        assert param.values[1] <= names, param.id
