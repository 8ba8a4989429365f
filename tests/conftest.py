"""Shared by every test tier: the hypothesis profiles, registered once.

HYPOTHESIS_PROFILE=ci (default): derandomised, a fixed number of examples, no deadline
(CI machines stall).  HYPOTHESIS_PROFILE=deep: many more random examples, for a soak run.
"""
import os
import subprocess

import pytest
from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=100, print_blob=True,
                          suppress_health_check=_SLOW_OK)
settings.register_profile("deep", deadline=None, max_examples=5000, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def loopdev():
    """attach(path, readonly=False) -> /dev/loopN, detached in finally.  No loop devices
    is a failure, not a skip (STYLE 24)."""
    attached = []

    def attach(path, readonly=False):
        cmd = ["losetup", "-f", "--show"] + (["-r"] if readonly else []) + [str(path)]
        dev = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
        attached.append(dev)
        return dev

    try:
        yield attach
    finally:
        for dev in attached:
            subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
def device_path(tmp_path, loopdev):
    """path(image, kind) -> another name of the same device: "file" (the image itself),
    "symlink" to it, "loop" device backed by it, "bind" mount of it onto another file.
    Bind mounts are undone in finally, before loopdev detaches its devices."""
    binds = []

    def path(image, kind):
        if kind == "file":
            return str(image)
        if kind == "symlink":
            link = tmp_path / f"{image.name}.link"
            link.symlink_to(image)
            return str(link)
        if kind == "loop":
            return loopdev(image)
        assert kind == "bind", kind
        target = tmp_path / f"{image.name}.bind"
        target.touch()
        subprocess.run(["mount", "--bind", str(image), str(target)], check=True)
        binds.append(target)
        return str(target)

    try:
        yield path
    finally:
        failed = [t for t in reversed(binds) if subprocess.run(["umount", str(t)]).returncode]
        assert not failed, f"bind mounts left: {failed}"
