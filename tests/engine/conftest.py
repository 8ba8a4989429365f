"""Engine tests: hypothesis profiles (when tests/conftest.py has not registered them) and
an engine-level consistency check for trees whose items are not file system items."""
import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

from ctrfs.fsck.checks import Checker


def _register(name, **kw):
    try:
        settings.get_profile(name)
    except InvalidArgument:
        settings.register_profile(name, **kw)


_register("ci", derandomize=True, deadline=None, max_examples=50, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_register("deep", deadline=None, max_examples=2000,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ENGINE_CHECKS = ("check_system_trees", "check_fs_trees", "check_pointers", "check_refcounts",
                 "check_usage", "check_summaries")


def check_engine_storage(engine):
    """fsck's storage-level checks of the engine's last checkpoint (node hashes, key
    bounds, refcounts, usage counts, log summaries), without the namespace checks, so
    trees of arbitrary keys can be checked too."""
    checker = Checker(engine.dev, slot=engine.cp["seq"] % 2)
    checker.check_superblocks()
    checker.check_checkpoints()
    if checker.cp is None:
        return list(checker.problems) or ["no checkpoint"]
    for name in ENGINE_CHECKS:
        getattr(checker, name)()
    return [f"{p[0]}: {p[1]}" for p in checker.problems]


@pytest.fixture(scope="session")
def engine_problems():
    """check_engine_storage, as a fixture (conftest modules are not importable by name)."""
    return check_engine_storage
