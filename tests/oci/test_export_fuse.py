"""Export of images made through a real FUSE mount with `ctrfs commit` (the second image's
parent is the first): the OCI layout umoci unpacks equals the image read through a
read-only mount of it, and the second layer holds only the changes."""
import gzip
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuse"))   # the mount helpers

from exporttree import assert_same, dir_manifest  # noqa: E402
from fusemount import BIN, Mount, fsck, mkfs  # noqa: E402


def ctrfs(*args):
    r = subprocess.run([str(BIN / "ctrfs"), *map(str, args)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


def test_export_images_committed_through_the_mount(tmp_path):
    dev = mkfs(tmp_path / "fs.img")
    mnt = tmp_path / "mnt"
    with Mount(dev, mnt) as m:
        root = m.path
        (root / "etc" / "gone").mkdir(parents=True)
        (root / "etc" / "gone" / "f").write_bytes(b"lower")
        (root / "bin").mkdir()
        (root / "bin" / "prog").write_bytes(os.urandom(200000))
        os.chmod(root / "bin" / "prog", 0o755)
        os.link(root / "bin" / "prog", root / "bin" / "prog-link")
        os.symlink("/bin/prog", root / "run-me")
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mkfifo(root / "pipe")
        os.setxattr(root / "bin" / "prog", "user.tag", b"v1")
        os.chown(root / "bin" / "prog", 1000, 1000)
        ctrfs("commit", root, "img:1")
        subprocess.run(["rm", "-rf", str(root / "etc" / "gone")], check=True)
        (root / "etc" / "new").write_bytes(b"upper")
        with open(root / "bin" / "prog", "r+b") as f:
            f.seek(4096)
            f.write(b"patched")
        os.link(root / "bin" / "prog", root / "etc" / "prog-link2")
        ctrfs("commit", root, "img:2")
    fsck(dev)
    oci = tmp_path / "oci"
    ctrfs("export", "--format", "oci", dev, "img:2", oci)
    index = json.loads((oci / "index.json").read_text())
    blobs = oci / "blobs" / "sha256"
    man = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    assert len(man["layers"]) == 2
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress((blobs / man["layers"][1]["digest"][7:]).read_bytes()))) as t:
        names = {m.name: m for m in t.getmembers()}
    assert "etc/.wh.gone" in names and "etc/new" in names
    assert names["bin/prog"].isfile() and names["bin/prog-link"].islnk()
    assert names["etc/prog-link2"].islnk() and names["etc/prog-link2"].linkname == "bin/prog"
    assert "null" not in names and "run-me" not in names            # unchanged: not in the layer
    bundle = tmp_path / "bundle"
    r = subprocess.run(["umoci", "unpack", "--image", f"{oci}:2", str(bundle)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with Mount(dev, mnt, "image=img:2", "ro") as m:
        assert_same(dir_manifest(bundle / "rootfs"), dir_manifest(m.path))
