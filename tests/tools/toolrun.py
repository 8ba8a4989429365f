"""Helpers for testing the tools through their console scripts, as an admin runs them
(a uniquely named module: every tests/ folder has its own conftest)."""
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f"<rc {self.rc} out {self.out!r} err {self.err!r}>"


def run(tool, *args, **kw):
    """Run a console script from the venv; never CTRFS_DEBUG (errors must be one line)."""
    env = {k: v for k, v in kw.pop("env", os.environ).items() if k != "CTRFS_DEBUG"}
    exe = BIN / tool
    assert exe.exists(), f"console script {exe} not installed"
    proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120, **kw)
    return Result(proc)


def assert_ok(res):
    assert res.rc == 0, res
    assert "Traceback" not in res.err, res
    return res


def assert_error(res, code, *fragments, prog):
    """Exit code, exactly one stderr line starting with the tool's name, no traceback."""
    assert res.rc == code, res
    assert "Traceback" not in res.err and "Traceback" not in res.out, res
    lines = res.err.splitlines()
    assert len(lines) == 1, res
    assert res.err.endswith("\n"), res
    assert lines[0].startswith(f"{prog}: "), res
    for frag in fragments:
        assert frag in lines[0], (frag, res)
    return lines[0]


def mkfs(*args):
    return run("mkfs.ctrfs", *args)


def ctrfs(*args):
    return run("ctrfs", *args)


def file_bytes(path):
    return Path(path).read_bytes()
