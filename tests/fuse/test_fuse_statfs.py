"""statfs through a real mount: `df -i` used inodes are the mounted tree's live inodes,
kept as files come and go (no walk per statfs), and the same again after a remount."""
import os
import subprocess
import time

from fusemount import Mount


def used(path):
    s = os.statvfs(path)
    assert s.f_favail == s.f_ffree and s.f_files >= s.f_ffree
    return s.f_files - s.f_ffree


def df_iused(path):
    """IUsed of `df -i` (--output=iused is the same column; df refuses both together)."""
    out = subprocess.run(["df", "--output=iused", str(path)], check=True, capture_output=True,
                         text=True).stdout.split()
    return int(out[-1])


def eventually(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def inodes_seen(root):
    """Distinct inodes under root (root included), as a walk finds them."""
    seen = {os.lstat(root).st_ino}
    for top, dirs, files in os.walk(root):
        for n in dirs + files:
            seen.add(os.lstat(os.path.join(top, n)).st_ino)
    return len(seen)


def test_df_i_counts_live_inodes(image, tmp_path):
    mnt = tmp_path / "m"
    with Mount(image, mnt) as m:
        base = used(m.path)
        assert base == inodes_seen(m.path) == df_iused(m.path) == 1      # the root directory
        (m / "d").mkdir()
        for i in range(40):
            (m / "d" / f"f{i}").write_bytes(b"x" * i)
        os.symlink("d/f1", m / "sym")
        os.mknod(m / "fifo", 0o600 | 0o010000)
        os.link(m / "d" / "f2", m / "hard")          # a second name, no new inode
        assert used(m.path) == base + 43 == inodes_seen(m.path) == df_iused(m.path)
        with open(m / "d" / "f3", "rb"):              # unlinked while open: lives until closed
            for i in range(40):
                os.unlink(m / "d" / f"f{i}")
            # d, sym, fifo, f2 (as hard), f3 (open); a RELEASE of the writes above may still
            # be on its way (the kernel sends it after close() returned), so wait for it
            assert eventually(lambda: used(m.path) == base + 5)
        # The kernel sends RELEASE after close() returned (its handles of earlier opens
        # too): an unlinked inode goes when its last one arrives, a moment later.
        assert eventually(lambda: used(m.path) == base + 4)
        os.unlink(m / "hard")
        assert eventually(lambda: used(m.path) == base + 3) and inodes_seen(m.path) == base + 3
    with Mount(image, mnt) as m:                      # counted afresh from the stored tree
        assert used(m.path) == base + 3 == df_iused(m.path)
