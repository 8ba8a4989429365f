"""Regression images (tests/fsck/images, made by make_images.py): each damaged copy of
one small file system must still be judged as when it was made: the named checks, the
-n exit, the -y exit, then clean.  They also pin the on-disk format: an image that no
longer reads means the format changed (then make_images.py, deliberately)."""
import json
import lzma
from pathlib import Path

import pytest

from fsckrun import checks_of, fsck, listing, mount

IMAGES = Path(__file__).parent / "images"
CASES = json.loads((IMAGES / "cases.json").read_text())


def load(name):
    return bytearray(lzma.decompress((IMAGES / f"{name}.img.xz").read_bytes()))


@pytest.mark.parametrize("name", sorted(CASES))
def test_image(name):
    case = CASES[name]
    img = load(name)
    verify = case["verify_data"]
    first = fsck(img, "n", verify)
    assert first.exit_code == case["n_exit"], (case["damage"], first.problems)
    assert set(case["checks"]) <= checks_of(first), (case["damage"], first.problems)
    assert set(case["checks"]) or not first.problems
    fixed = fsck(img, "y", verify)
    assert fixed.exit_code == case["y_exit"], (case["damage"], fixed.remaining)
    assert fsck(img, "n", verify).exit_code == 0


def test_clean_image_contents():
    fs = mount(load("clean"))
    tree = listing(fs)
    assert {b"/dir", b"/dir/big", b"/big-link", b"/sym", b"/after", b"/dir/sub/fifo"} <= set(tree)
    assert tree[b"/sym"][3] == b"dir/big"
    assert tree[b"/dir/big"][1] == 3
    assert tree[b"/dir/big"][3][:4096] == b"B" * 4096
