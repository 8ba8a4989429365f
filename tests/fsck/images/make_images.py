"""Make the fsck regression images: one small clean file system (1 MiB, text contents so
it compresses to a few KiB) and a copy of it per damage, each xz-compressed, plus
cases.json with what fsck must say about each.

    .venv/bin/python tests/fsck/images/make_images.py

Run it again only after a deliberate on-disk format change (the images pin the format:
test_fsck_images.py fails when an old image stops reading as it did)."""
import json
import lzma
from pathlib import Path

from ctrfs.format import constants as C
from ctrfs.testing import corrupt as K

HERE = Path(__file__).parent

# name -> (injector, checks -n must report, exit of -n, exit of -y, --verify-data)
CASES = {
    "clean": (lambda img: "no damage", [], 0, 0, True),
    "superblock-random": (lambda img: K.corrupt_superblock(img, "random"), ["check_superblocks"], 4, 1, False),
    "mirror-zeroes": (lambda img: K.corrupt_superblock(img, "zeroes", mirror=True), ["check_superblocks"],
                      4, 1, False),
    "slot-newest-bit": (lambda img: K.corrupt_checkpoint(img, K.newest_slot(img), "bit"),
                        ["check_checkpoints"], 4, 1, False),
    "slot-newest-torn": (lambda img: K.tear_checkpoint(img, K.newest_slot(img)), ["check_checkpoints"],
                         4, 1, False),
    "ca-node-bit": (lambda img: K.corrupt_node(img, C.TREE_CA, "bit"), ["check_system_trees"], 4, 1, False),
    "ca-log-bit": (lambda img: K.corrupt_calog(img, "bit"), ["check_calog"], 4, 1, False),
    "usage-node-ones": (lambda img: K.corrupt_node(img, C.TREE_USAGE, "ones"), ["check_system_trees"],
                        4, 1, False),
    "image-leaf-random": (lambda img: K.corrupt_node(img, C.TREE_FS, "random", 0, level=0, name=b"img"),
                          ["check_fs_trees"], 4, 1, False),
    "refcount-high": (lambda img: K.wrong_refcount(img, +1), ["check_refcounts"], 4, 1, False),
    "usage-high": (lambda img: K.wrong_usage(img, +2), ["check_usage"], 4, 1, False),
    "summary-bit": (lambda img: K.corrupt_summary(img, "bit"), ["check_summaries"], 4, 1, False),
    "dangling-dirent": (K.dangling_dirent, ["check_orphans"], 4, 1, False),
    "nlink-wrong": (lambda img: K.set_nlink(img, 4, 7), ["check_link_counts"], 4, 1, False),
    "unreachable-dir": (lambda img: K.drop_dirent(img, C.ROOT_INO, b"dir"), ["check_orphans"], 4, 1, False),
    "data-bit": (lambda img: K.corrupt_data(img, "bit", 2), ["check_data"], 4, 1, True),
}


def main():
    base = K.sample_image(1 << 20, files=40, compressible=True)
    manifest = {}
    for name, (inject, checks, n_exit, y_exit, verify) in CASES.items():
        img = bytearray(base)
        what = inject(img)
        (HERE / f"{name}.img.xz").write_bytes(lzma.compress(bytes(img), preset=9))
        manifest[name] = dict(damage=what, checks=checks, n_exit=n_exit, y_exit=y_exit, verify_data=verify)
    (HERE / "cases.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
