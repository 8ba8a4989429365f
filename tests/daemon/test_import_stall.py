"""An import through the daemon does not stall the trees it serves while it waits for its
input: the layer blob is a FIFO fed half, then held back, and meanwhile stat() of files
not yet looked up in a mounted clone answers at once (before the fix each waited for the
rest of the blob, the import holding the engine's turn while its reader thread waited)."""
import json
import os
import subprocess
import threading
import time

from daemonrun import BIN, cleanup, mount, umount
from fusemount import fsck, wait_unlocked
from ocitree import Layout, busybox_tree, ctrfs, mkfs
from toolrun import assert_ok

HOLD = 8.0            # seconds the second half of the blob is held back


def top_layer_path(layout, tag):
    d = layout.dir
    index = json.loads((d / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads((d / "blobs/sha256" / desc["digest"].split(":")[1]).read_text())
    return d / "blobs/sha256" / manifest["layers"][-1]["digest"].split(":")[1]


def test_reads_answer_while_an_import_waits_for_its_input(tmp_path):
    try:
        src = Layout(tmp_path / "src")
        src.busybox("a", more=lambda root: [(root / "etc" / f"f{k}").write_text(f"{k}\n") for k in range(200)])
        src.new("c")
        b = src.bundle("c")
        root = busybox_tree(b / "rootfs")
        (root / "opt").mkdir()
        for k in range(32):
            (root / "opt" / f"blob{k}").write_bytes(os.urandom(256 << 10))
        src.repack("c", b)
        img = mkfs(tmp_path / "s.img", "256M")
        assert_ok(ctrfs("import", img, f"oci:{src.dir}:a", "--name", "a:1", "-q"))
        mnt = mount(img, tmp_path / "m", "image=a:1", "clone=x")

        blob = top_layer_path(src, "c")
        data = blob.read_bytes()
        blob.unlink()
        os.mkfifo(blob)
        half, held = threading.Event(), threading.Event()

        def feed():
            with open(blob, "wb") as f:
                f.write(data[:len(data) // 2])
                f.flush()
                half.set()
                held.wait(HOLD)
                f.write(data[len(data) // 2:])

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        imp = subprocess.Popen([str(BIN / "ctrfs"), "import", str(img), f"oci:{src.dir}:c", "--name", "c:1", "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert half.wait(60), "the import never read its layer"
        time.sleep(1.0)                    # the reader thread has drained the FIFO and waits
        worst = 0.0
        for k in range(0, 200, 20):        # files of the clone not yet looked up
            t0 = time.monotonic()
            os.lstat(mnt / "etc" / f"f{k}")
            worst = max(worst, time.monotonic() - t0)
        waiting = imp.poll() is None
        held.set()
        out, err = imp.communicate(timeout=120)
        feeder.join(timeout=30)
        assert imp.returncode == 0, err
        assert waiting, "the import ended before the stats: nothing was tested"
        assert worst < 2.0, f"a stat waited {worst:.1f} s for the import's input"
        assert (mnt / "etc/f7").read_text() == "7\n"
        umount(mnt)
        wait_unlocked(img)
        fsck(img)
    finally:
        cleanup(tmp_path)
