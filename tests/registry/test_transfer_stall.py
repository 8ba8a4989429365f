"""A file-level pull through the daemon does not stall the trees it serves while the
registry is slow: the proxy holds the first blob answer back, and meanwhile lookups in a
mounted clone answer at once (before the fix each waited for the registry, the pull
holding the engine's turn during its fetch)."""
import os
import subprocess
import sys
import time
from pathlib import Path

from ocitree import assert_same_tree, ctrfs, describe_dir, describe_image, mkfs
from regrun import ctrfs_args, push
from toolrun import BIN, assert_ok

from ctrfs.testing.proxy import FaultProxy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))
from daemonrun import cleanup, mount, umount  # noqa: E402
from fusemount import fsck, wait_unlocked  # noqa: E402


def test_lookups_answer_while_a_transfer_pull_waits_for_the_registry(registry, layout, tmp_path):
    src = mkfs(tmp_path / "src.img")
    assert_ok(ctrfs("import", src, f"oci:{layout.dir}:app", "--name", "app:1", "-q"))
    assert_ok(push(src, "app:1", registry, "tx/app:1", "--format", "ctrfs"))
    dev = mkfs(tmp_path / "dev.img", "128M")
    assert_ok(ctrfs("import", dev, f"oci:{layout.dir}:base", "--name", "base:1", "-q"))
    try:
        mnt = mount(dev, tmp_path / "m", "image=base:1", "clone=x")
        with FaultProxy(registry.host) as proxy:
            proxy.fault(r"/blobs/sha256:", "stall")
            pull = subprocess.Popen([str(BIN / "ctrfs"), "pull", str(dev), f"docker://{proxy.host}/tx/app:1",
                                     *ctrfs_args(registry), "--name", "got:1", "-q"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                assert proxy.stalled.wait(60), "the pull never asked for a blob"
                time.sleep(0.5)
                worst = 0.0
                for k in range(10):            # names never looked up: each asks the daemon
                    t0 = time.monotonic()
                    assert not os.path.lexists(mnt / f"nope{k}")
                    worst = max(worst, time.monotonic() - t0)
                waiting = pull.poll() is None
            finally:
                proxy.release.set()
            out, err = pull.communicate(timeout=120)
        assert pull.returncode == 0, err
        assert waiting, "the pull ended before the lookups: nothing was tested"
        assert worst < 2.0, f"a lookup waited {worst:.1f} s for the registry"
        umount(mnt)
        wait_unlocked(dev)
    finally:
        cleanup(tmp_path)
    fsck(dev)
    assert_same_tree(describe_image(dev, "got:1"), describe_dir(layout.unpack("app")))
