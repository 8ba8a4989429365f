"""Helpers of the daemon tests (a uniquely named module): mounts of one device's views
through mount.ctrfs (the first one starts the daemon), the daemon's pid, and trees as
{path: (mode, uid, gid, content, link target)} models to compare file by file."""
import hashlib
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for sub in ("fuse", "oci", "tools"):
    sys.path.insert(0, str(HERE.parent / sub))

from fusemount import BIN, require_fuse  # noqa: E402

from ctrfs.unmount import RECORDS, find_mount  # noqa: E402


def mount(device, mnt, *options):
    """mount.ctrfs DEVICE MNT -o ... (daemon mode: returns once the mount exists)."""
    require_fuse()
    Path(mnt).mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "mount.ctrfs"), str(device), str(mnt)]
    if options:
        cmd += ["-o", ",".join(options)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0 and res.stderr == "", res
    assert os.path.ismount(mnt)
    return Path(mnt)


def umount(mnt):
    """What umount(8) runs for a ctrfs mount (its utab line names the helper), called
    directly: the FUSE tests cover umount(8) itself, and /sbin's link is shared."""
    res = subprocess.run([str(BIN / "umount.fuse.ctrfs"), str(mnt)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stderr == "", res
    assert not os.path.ismount(mnt)


def daemon_pid(mnt):
    devno = find_mount(os.path.realpath(mnt))
    with open(os.path.join(RECORDS, devno)) as f:
        return int(f.read().split()[0])


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid, timeout=60):
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"daemon {pid} still running"
        time.sleep(0.05)


def model(top):
    """{path: (mode, uid, gid, sha256 or link target or None)} of a tree, and its hardlink
    groups (paths sharing an inode)."""
    top = str(top)
    rows, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames + (["."] if dirpath == top else []):
            p = os.path.join(dirpath, name) if name != "." else top
            rel = "/" + os.path.relpath(p, top) if p != top else "/"
            st = os.lstat(p)
            body = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    body = hashlib.sha256(f.read()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            rows[rel] = (st.st_mode, st.st_uid, st.st_gid, body)
    return rows, sorted(sorted(g) for g in inodes.values() if len(g) > 1)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def assert_model(got, want, what):
    grows, glinks = got
    wrows, wlinks = want
    extra, missing = sorted(grows.keys() - wrows.keys()), sorted(wrows.keys() - grows.keys())
    assert not extra and not missing, (what, "extra", extra[:10], "missing", missing[:10])
    bad = [(p, grows[p], wrows[p]) for p in wrows if grows[p] != wrows[p]]
    assert not bad, (what, bad[:5])
    assert glinks == wlinks, (what, glinks, wlinks)


def cleanup(top):
    """After a failed test: no mount of ours left under top (pytest's tmp cleanup would
    walk into it), no daemon of ours left running."""
    top = os.path.realpath(top)
    pids = set()
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f if line.split()[4].startswith(top + "/")]
    for t in targets:
        try:
            pids.add(daemon_pid(t))
        except (OSError, TypeError, ValueError):
            pass
    for t in reversed(targets):
        subprocess.run(["umount", "-l", t], capture_output=True, timeout=30)
    for pid in pids:
        wait_gone(pid, timeout=60)
