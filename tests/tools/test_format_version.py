"""A device of another format version (version 1: block maps keyed among the inodes) is
refused at every open with one line naming the version and the unsupported exit code,
and nothing is written to it."""
import os

import pytest
from toolrun import assert_error, ctrfs, run

from ctrfs.format import constants as C
from ctrfs.format.superblock import SUPERBLOCK_SIZE, decode_superblock, encode_superblock

REFUSAL = "format version 1 is not supported: this ctrfs reads version 2 only"


def set_version(path, version):
    """Rewrite both superblocks (primary, mirror) with another version and a fresh CRC."""
    with open(path, "r+b") as f:
        sb = decode_superblock(f.read(SUPERBLOCK_SIZE))
        raw = encode_superblock({**sb, "version": version})
        for block in (0, sb["mirror_block"]):
            f.seek(block * sb["block_size"])
            f.write(raw)


@pytest.fixture
def v1_image(image):
    set_version(image, 1)
    return image


@pytest.mark.parametrize("tool,args,code", [
    ("fsck.ctrfs", ["-n", "-f"], 8),
    ("fsck.ctrfs", ["-y", "-f"], 8),
    ("ctrfs", ["images"], 8),
    ("ctrfs", ["df"], 8),
    ("ctrfs", ["commit"], 8),
])
def test_version_1_refused_by_every_tool(v1_image, tool, args, code):
    before = v1_image.read_bytes()
    if args == ["commit"]:
        args = ["commit", v1_image, "app"]
    else:
        args = [*args, v1_image]
    line = assert_error(run(tool, *args), code, REFUSAL, prog=tool)
    assert str(v1_image) in line
    assert v1_image.read_bytes() == before       # nothing written, not even a repair


@pytest.mark.parametrize("opts", [[], ["-o", "ro"]])
def test_version_1_refused_by_mount(v1_image, tmp_path, opts):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    before = v1_image.read_bytes()
    line = assert_error(run("mount.ctrfs", v1_image, mnt, *opts), 32, REFUSAL, prog="mount.ctrfs")
    assert str(v1_image) in line
    assert not os.path.ismount(mnt)
    assert v1_image.read_bytes() == before


def test_current_version_still_opens(image):
    """The fixture's superblock rewritten with the current version is accepted (the
    rewrite itself is not what the refusals above detect)."""
    set_version(image, C.FORMAT_VERSION)
    assert ctrfs("images", image).rc == 0
