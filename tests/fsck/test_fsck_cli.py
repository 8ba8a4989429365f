"""fsck.ctrfs through its console script: fsck(8) exit codes, one stderr line for every
bad input, nothing written by -n, progress lines for fsck(8)'s -C fd."""
import fcntl
import os
import signal
import subprocess
import time

import pytest

from ctrfs.format import constants as C
from ctrfs.fsck import main as fsck_main
from ctrfs.testing import corrupt as K

from fsckrun import FSCK, run_cli


@pytest.fixture
def clean(tmp_path, sample_bytes):
    path = tmp_path / "fs.img"
    path.write_bytes(sample_bytes)
    return path


@pytest.fixture
def broken(tmp_path, sample_bytes):
    """Damage -p may repair (a link count) and damage it may not (a dangling entry)."""
    img = bytearray(sample_bytes)
    K.set_nlink(img, 4, 7)
    K.dangling_dirent(img)
    path = tmp_path / "broken.img"
    path.write_bytes(img)
    return path


def assert_one_line_error(res, code, *fragments):
    assert res.returncode == code, res
    assert "Traceback" not in res.stderr + res.stdout, res
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fsck.ctrfs: "), res
    for frag in fragments:
        assert frag in lines[0], (frag, res)


def test_clean(clean):
    res = run_cli("-n", clean)
    assert res.returncode == 0 and res.stderr == ""
    assert ": checkpoint 3: clean, 2 trees, " in res.stdout
    for opts in ((), ("-p",), ("-a",), ("-y",), ("-f", "-y"), ("-fp",), ("-n", "--verify-data")):
        res = run_cli(*opts, clean)
        assert res.returncode == 0, (opts, res)


def test_missing_device(tmp_path):
    assert_one_line_error(run_cli("-n", tmp_path / "nope.img"), 8, "nope.img", "no such file")


@pytest.mark.parametrize("content", [b"", bytes(1 << 20), os.urandom(300000), b"\xff" * 8192])
def test_not_ctrfs(tmp_path, content):
    path = tmp_path / "other.img"
    path.write_bytes(content)
    assert_one_line_error(run_cli("-y", path), 8, "not a ctrfs file system")
    assert path.read_bytes() == content


def test_directory_is_not_a_device(tmp_path):
    assert_one_line_error(run_cli("-n", tmp_path), 8, "not a regular file or block device")


def test_truncated_device(tmp_path, sample_bytes):
    path = tmp_path / "short.img"
    path.write_bytes(sample_bytes[:len(sample_bytes) // 2])
    assert_one_line_error(run_cli("-n", path), 8, "smaller than its file system")


@pytest.mark.parametrize("args", [["-x"], ["--bogus"], ["-n", "-y"], ["-p", "-y"], ["-a", "-n"], [],
                                  ["a.img", "b.img"], ["--verify-data=yes"]])
def test_usage_errors(clean, args):
    if args and not args[0].endswith(".img"):
        args = args + [str(clean)]
    assert_one_line_error(run_cli(*args), 16)


def test_help():
    res = run_cli("--help")
    assert res.returncode == 0 and "usage: fsck.ctrfs" in res.stdout


def test_n_finds_and_never_writes(broken):
    before = broken.read_bytes()
    res = run_cli("-n", broken)
    assert res.returncode == 4 and res.stderr == ""
    assert "check_link_counts: tree @default: inode 4: link count 7, found 3" in res.stdout
    assert "check_orphans:" in res.stdout
    assert broken.read_bytes() == before


def test_no_mode_without_a_tty_checks_only(broken):
    before = broken.read_bytes()
    res = run_cli(broken, stdin=subprocess.DEVNULL)
    assert res.returncode == 4
    assert broken.read_bytes() == before


def test_p_then_y(broken):
    res = run_cli("-p", broken)
    assert res.returncode == 1 | 4, res
    assert "left uncorrected" in res.stdout
    res = run_cli("-p", broken)
    assert res.returncode == 4, res
    res = run_cli("-y", broken)
    assert res.returncode == 1, res
    res = run_cli("-n", broken)
    assert res.returncode == 0, res


def test_y_repairs_superblock(clean):
    data = bytearray(clean.read_bytes())
    K.corrupt_superblock(data, "random")
    clean.write_bytes(data)
    assert run_cli("-y", clean).returncode == 1
    assert run_cli("-n", clean).returncode == 0
    fixed = clean.read_bytes()
    mirror = K.mirror_offset(bytearray(fixed))
    assert fixed[:192] == fixed[mirror:mirror + 192]


def test_verbose_names_each_check(clean):
    res = run_cli("-n", "-v", clean)
    assert res.returncode == 0
    for what in ("superblocks", "checkpoints", "system trees", "FS trees", "block pointers",
                 "reference counts", "segment usage", "log unit summaries", "link counts"):
        assert f"Checking {what}" in res.stdout


def test_progress_lines_to_a_descriptor(clean):
    r, w = os.pipe()
    try:
        res = run_cli("-n", "-C", str(w), clean, pass_fds=(w,))
        os.close(w)
        w = None
        lines = os.read(r, 1 << 16).decode().splitlines()
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    assert res.returncode == 0
    assert lines, res
    for line in lines:
        npass, cur, total, device = line.split(" ", 3)
        assert int(npass) >= 1 and int(cur) >= 0 and int(total) >= 0 and device == str(clean)


def test_progress_bar_on_request(clean):
    res = run_cli("-n", "-C", clean)      # (text mode turns the bar's \r into newlines)
    assert res.returncode == 0 and "FS trees" in res.stdout and "summaries" in res.stdout


def test_device_in_use(clean):
    """A mounted device holds an exclusive lock: fsck must not check it behind the mount's back."""
    fd = os.open(clean, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert_one_line_error(run_cli("-n", clean), 8, "in use")
    finally:
        os.close(fd)


def test_read_only_loop_device(clean):
    dev = subprocess.run(["losetup", "-f", "--show", "-r", str(clean)], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        assert run_cli("-n", dev).returncode == 0
        assert_one_line_error(run_cli("-y", dev), 8, "read-only")
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_loop_device_repair(broken):
    dev = subprocess.run(["losetup", "-f", "--show", str(broken)], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        assert run_cli("-y", dev).returncode == 1
        assert run_cli("-n", dev).returncode == 0
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


# ---- main() in process: the exits no real device can provoke on demand --------------------------
def test_cancelled(clean, monkeypatch, capsys):
    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(fsck_main, "checker", lambda: interrupted)
    assert fsck_main.main(["-n", str(clean)]) == 32
    assert capsys.readouterr().err == "fsck.ctrfs: cancelled\n"


@pytest.mark.parametrize("verbose", [False, True])
def test_internal_error(clean, monkeypatch, capsys, verbose):
    def broken_code(*a, **kw):
        raise ZeroDivisionError("oops")
    monkeypatch.setattr(fsck_main, "checker", lambda: broken_code)
    assert fsck_main.main((["-v"] if verbose else []) + ["-n", str(clean)]) == 128
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "fsck.ctrfs: internal error: ZeroDivisionError: oops"
    assert ("Traceback" in err) == verbose


def test_default_tree_name_is_in_messages(broken):
    res = run_cli("-n", broken)
    assert f"tree {C.DEFAULT_TREE_NAME.decode()}" in res.stdout


def test_sigint_exits_32(clean):
    """A real Ctrl-C: fsck is held in its first progress write (a full pipe), then
    interrupted; it must exit 32 with one line, whatever it was doing."""
    r, w = os.pipe()
    fcntl.fcntl(w, 1031, 4096)                      # F_SETPIPE_SZ: the smallest pipe
    os.set_blocking(w, False)
    try:
        while True:
            os.write(w, b"x" * 512)
    except BlockingIOError:
        pass
    os.set_blocking(w, True)
    proc = subprocess.Popen([str(FSCK), "-n", "-C", str(w), str(clean)], pass_fds=(w,),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(r)
        os.close(w)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 32, (out, err)
    assert err == "fsck.ctrfs: cancelled\n"
