"""What a repair leaves behind: the right names, counts and contents, not just a clean
second run.  And what -p and -n must not do."""
import errno
import stat

import pytest

from ctrfs.device import MemoryDevice
from ctrfs.errors import FsError
from ctrfs.format import constants as C
from ctrfs.format.items import block_key, fs_key
from ctrfs.fsck.checks import check_engine
from ctrfs.mkfs.geometry import make_filesystem
from ctrfs.testing import corrupt as K

from fsckrun import assert_fsck, checks_of, fsck, listing, mount

T = C.DEFAULT_TREE_NAME


def test_clean_sample_and_check_engine(img):
    assert fsck(img).exit_code == 0
    assert fsck(img, "y").exit_code == 0
    fs = mount(img)
    assert check_engine(fs.engine) == []


def test_check_engine_sees_damage(img):
    K.set_nlink(img, 4, 5)
    fs = mount(img)
    problems = check_engine(fs.engine)
    assert [c for c, _m in problems] == ["check_link_counts"]
    assert all(isinstance(m, str) for _c, m in problems)


def test_fresh_filesystem_is_clean():
    dev = MemoryDevice(bytearray(1 << 20))
    engine = make_filesystem(dev, segment_blocks=16)
    assert check_engine(engine) == []
    engine.log.close()
    assert fsck(dev.data).exit_code == 0


def test_dangling_entry_removed_rest_intact(img):
    want = listing(mount(img))
    K.dangling_dirent(img)
    assert_fsck(img, {"check_orphans"})
    fs = mount(img)
    with pytest.raises(FsError) as exc:
        fs.lookup(C.ROOT_INO, b"ghost")
    assert exc.value.errno == errno.ENOENT
    assert listing(fs) == want


def test_link_count_set_to_the_names_found(img):
    want = listing(mount(img))
    K.set_nlink(img, 4, 9)
    K.set_nlink(img, 2, 1)
    assert_fsck(img, {"check_link_counts"})
    fs = mount(img)
    assert fs.getattr(4).nlink == 3          # big, big-link, big-link2
    assert listing(fs) == want


def test_unreachable_directory_moves_to_lost_found(img):
    before = listing(mount(img))
    K.drop_dirent(img, C.ROOT_INO, b"dir")
    assert_fsck(img, {"check_orphans"})
    fs = mount(img)
    lf = fs.lookup(C.ROOT_INO, b"lost+found")
    assert fs.getattr(lf).is_dir and stat.S_IMODE(fs.getattr(lf).mode) == 0o700
    moved = fs.lookup(lf, b"#2")
    assert moved == 2 and fs.parent_of(2) == lf
    after = listing(fs)
    # Everything under /dir is now under /lost+found/#2, unchanged.
    for path, attrs in before.items():
        if path.startswith(b"/dir/"):
            assert after[b"/lost+found/#2" + path[4:]] == attrs
        elif path != b"/dir":
            assert after[path] == attrs or path == b"/"
    subdirs = sum(1 for _n, i, _c in fs.readdir(C.ROOT_INO) if fs.getattr(i).is_dir)
    assert fs.getattr(C.ROOT_INO).nlink == 2 + subdirs


def test_unreachable_file_keeps_its_content(img):
    fs = mount(img)
    target = fs.readlink(fs.lookup(C.ROOT_INO, b"sym"))
    K.drop_dirent(img, C.ROOT_INO, b"sym")
    assert_fsck(img, {"check_orphans"})
    fs = mount(img)
    lf = fs.lookup(C.ROOT_INO, b"lost+found")
    ino = fs.lookup(lf, b"#5")
    assert fs.readlink(ino) == target and fs.getattr(ino).nlink == 1


def test_existing_lost_found_is_reused(img):
    fs = mount(img, writable=True)
    lf = fs.mkdir(C.ROOT_INO, b"lost+found", 0o700).ino
    fs.commit()
    fs.engine.log.close()
    K.drop_dirent(img, C.ROOT_INO, b"sym")
    assert_fsck(img, {"check_orphans"})
    fs = mount(img)
    assert fs.lookup(C.ROOT_INO, b"lost+found") == lf
    assert [n for n, _i, _c in fs.readdir(lf)] == [b"#5"]


def test_missing_inode_entries_removed(img):
    K.drop_inode(img, 4)           # "big": three names, an xattr and blocks left behind
    first, _fixed = assert_fsck(img, {"check_orphans"})
    assert any("items of missing inode 4" in m for _c, m in first.problems)
    fs = mount(img)
    names = {p for p in listing(fs)}
    assert not {b"/big-link", b"/dir/big", b"/dir/sub/big-link2"} & names
    assert fs.tree.get(fs_key(4, C.ITEM_XATTR, b"user.note")) is None


def test_image_repaired_too(img):
    K.dangling_dirent(img, name=b"img")
    assert_fsck(img, {"check_orphans"})
    fs = mount(img, name=b"img")
    with pytest.raises(FsError):
        fs.lookup(C.ROOT_INO, b"ghost")
    assert dict(mount(img).engine.snapshots())[b"img"]["kind"] == C.SNAP_IMAGE


def test_refcounts_and_usage_rebuilt_exactly(img):
    K.wrong_refcount(img, +1)
    K.wrong_refcount(img, -1, C.BLOCK_NODE)
    K.wrong_usage(img, +4)
    K.leak_block(img)
    first, _ = assert_fsck(img, {"check_refcounts", "check_usage"})
    assert any("leaked" in m for _c, m in first.problems)


def test_fallback_to_older_checkpoint_when_newest_lost_its_tables(img):
    """The newest checkpoint's snapshot table is unreadable; the older slot is intact:
    -y goes back one commit (losing it) instead of losing every tree."""
    older = listing(mount(img, name=b"img"))
    K.corrupt_node(img, C.TREE_SNAP, "zeroes")
    _first, fixed = assert_fsck(img, {"check_system_trees"})
    assert any("falling back from checkpoint 3" in n for n in fixed.notes), fixed.notes
    fs = mount(img)
    assert fs.engine.seq == 3                 # checkpoint 2, then the repair commit
    assert b"/after" not in listing(fs)       # made by the lost commit 3
    assert listing(mount(img, name=b"img")) == older


def test_image_leaf_salvaged_into_lost_found(img):
    """A leaf both checkpoints share: what it held is lost, the rest is kept and every
    inode that lost its name lands in lost+found."""
    K.corrupt_node(img, C.TREE_FS, "bit", 1, level=0, name=b"img")
    assert_fsck(img, {"check_fs_trees"})
    fs = mount(img, name=b"img")
    assert fs.getattr(C.ROOT_INO).is_dir
    assert b"/lost+found" in listing(fs)
    default = mount(img)
    assert b"/after" in listing(default)


def test_data_block_lost_becomes_a_hole(img):
    fs = mount(img)
    big = fs.lookup(fs.lookup(C.ROOT_INO, b"dir"), b"big")
    size = fs.getattr(big).size
    engine = fs.engine
    paddr = engine.ca.get(bytes(fs.tree.get(block_key(big, 0))[8:40]))[0]
    img[paddr * 4096:(paddr + 1) * 4096] = bytes(4096)
    assert fsck(img).exit_code == 0           # data is not read without --verify-data
    assert_fsck(img, {"check_data"}, verify_data=True)
    fs = mount(img)
    assert fs.getattr(big).size == size
    assert fs.read(big, 0, 4096) == bytes(4096)


def test_p_repairs_safe_kinds_only(img):
    K.set_nlink(img, 4, 9)
    K.dangling_dirent(img)
    before = fsck(img)
    assert checks_of(before) == {"check_link_counts", "check_orphans"}
    res = fsck(img, "p")
    assert res.exit_code == 1 | 4
    assert {c for c, _m in res.remaining} == {"check_orphans"}
    assert mount(img).getattr(4).nlink == 3
    assert fsck(img, "y").exit_code == 1
    assert fsck(img).exit_code == 0


def test_p_with_only_unsafe_problems_changes_nothing(img):
    K.dangling_dirent(img)
    before = bytes(img)
    res = fsck(img, "p")
    assert res.exit_code == 4
    assert bytes(img) == before


def test_n_never_writes(img):
    for inject in (K.dangling_dirent, lambda i: K.corrupt_superblock(i, "zeroes"),
                   lambda i: K.corrupt_node(i, C.TREE_CA, "bit")):
        inject(img)
        before = bytes(img)
        assert fsck(img, "n").exit_code == 4
        assert bytes(img) == before


def test_torn_older_slot_is_an_interrupted_commit_not_damage(img):
    """A crash while the next commit wrote the other slot looks exactly like this."""
    newest = K.newest_slot(img)
    K.tear_checkpoint(img, 1 - newest)
    res = fsck(img)
    assert res.exit_code == 0
    assert any("interrupted commit" in n for n in res.notes)


def test_two_damages_at_once(img):
    K.set_nlink(img, 3, 1)
    K.corrupt_superblock(img, "random")
    K.corrupt_checkpoint(img, 1 - K.newest_slot(img), "ones")
    assert_fsck(img, {"check_superblocks", "check_checkpoints", "check_link_counts"})


def test_both_superblocks_gone_is_not_ctrfs(img):
    from ctrfs.errors import DeviceError
    K.corrupt_superblock(img, "zeroes")
    K.corrupt_superblock(img, "zeroes", mirror=True)
    with pytest.raises(DeviceError, match="not a ctrfs"):
        fsck(img)


def test_both_superblocks_damaged_but_recognisable(img):
    K.corrupt_superblock(img, "bit")
    K.corrupt_superblock(img, "zeroes", mirror=True)
    res = fsck(img, "y")
    assert res.exit_code == 4 and checks_of(res) == {"check_superblocks"}


def test_tree_without_root_directory_gets_one(img):
    K.empty_tree(img)
    first, _ = assert_fsck(img, {"check_directories"})
    assert any("tree empty: root directory missing" in m for _c, m in first.problems)
    fs = mount(img, name=b"empty")
    assert fs.getattr(C.ROOT_INO).is_dir and list(fs.readdir(C.ROOT_INO)) == []


@pytest.mark.parametrize("block_size", [8192, 65536])
def test_other_block_sizes(block_size):
    img = K.sample_image(32 << 20, block_size=block_size, files=60)
    assert fsck(img).exit_code == 0
    K.corrupt_superblock(img, "zeroes")
    K.corrupt_node(img, C.TREE_FS, "bit", 1, level=0, name=b"img")
    K.set_nlink(img, 4, 1)
    K.corrupt_summary(img, "random")
    assert_fsck(img, {"check_superblocks", "check_fs_trees", "check_link_counts", "check_summaries"})
