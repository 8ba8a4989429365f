"""check_totals: every image's entry records its logical size and inode count; fsck finds
a wrong one, and after -y (or -p) every image's figures equal a recount of its tree, also
when the repair itself changed the tree (files lost with an unreadable leaf, lost+found)."""
from ctrfs.format import constants as C
from ctrfs.testing import corrupt as K
from ctrfs.totals import tree_totals

from fsckrun import assert_fsck, checks_of, fsck, mount, run_cli

IMG = b"img"


def recorded(img):
    """name -> (logical bytes, inodes) recorded, and name -> the same recounted from the tree."""
    engine = mount(img).engine
    rec, count = {}, {}
    for name, e in engine.snapshots():
        if e["kind"] == C.SNAP_IMAGE:
            rec[name] = (e["logical_bytes"], e["inodes"])
            count[name] = tree_totals(engine.tree(name))
    return rec, count


def test_sample_images_record_their_figures(img):
    rec, count = recorded(img)
    assert rec == count and rec[IMG][1] > 150


def test_wrong_figures_found_and_repaired(img):
    _rec, want = recorded(img)
    K.wrong_totals(img, IMG, bytes_delta=4096, inodes_delta=-7)
    rec, _count = recorded(img)
    assert rec[IMG] == (want[IMG][0] + 4096, want[IMG][1] - 7)
    first, _fixed = assert_fsck(img, {"check_totals"})
    assert checks_of(first) == {"check_totals"}
    assert any(f"records {want[IMG][0] + 4096} bytes in {want[IMG][1] - 7} inodes" in m
               for _c, m in first.problems)
    assert recorded(img) == (want, want)


def test_p_repairs_figures(img):
    _rec, want = recorded(img)
    K.wrong_totals(img, IMG, bytes_delta=-1, inodes_delta=0)
    assert fsck(img, "p").exit_code == 1
    assert fsck(img).exit_code == 0
    assert recorded(img)[0] == want


def test_cli_exit_codes(img, tmp_path):
    K.wrong_totals(img, IMG)
    path = tmp_path / "t.img"
    path.write_bytes(img)
    r = run_cli("-n", path)
    assert r.returncode == 4 and "check_totals: image 'img'" in r.stdout, r
    assert run_cli("-y", path).returncode == 1
    assert run_cli("-n", path).returncode == 0


def test_figures_follow_files_lost_with_a_leaf(img):
    """An unreadable leaf of the image: -y rebuilds the tree without it, and the entry then
    records what is left (fewer inodes than before), not what was committed."""
    _rec, before = recorded(img)
    K.corrupt_node(img, C.TREE_FS, "zeroes", 1, level=0, name=IMG)
    assert_fsck(img, {"check_fs_trees"})
    rec, count = recorded(img)
    assert rec == count
    assert rec[IMG][1] < before[IMG][1]


def test_figures_count_lost_and_found(img):
    """An unreachable directory in the image moves into a new lost+found: one inode more."""
    _rec, before = recorded(img)
    K.drop_dirent(img, C.ROOT_INO, b"dir", name=IMG)
    assert_fsck(img, {"check_orphans"})
    rec, count = recorded(img)
    assert rec == count
    assert rec[IMG] == (before[IMG][0], before[IMG][1] + 1)


def test_clone_into_an_image_records_figures(img):
    """An image cloned from a writable tree counts its figures (the tree records none)."""
    fs = mount(img, writable=True)
    fs.engine.clone(C.DEFAULT_TREE_NAME, b"snap", C.SNAP_IMAGE)
    fs.engine.clone(IMG, b"img2", C.SNAP_IMAGE)
    fs.engine.commit()
    fs.engine.log.close()
    rec, count = recorded(img)
    assert rec == count and rec[b"snap"][1] > 150 and rec[b"img2"] == rec[IMG]
    assert fsck(img).exit_code == 0
