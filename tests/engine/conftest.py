"""Engine tests: an engine-level consistency check for trees whose items are not file
system items (the hypothesis profiles come from tests/conftest.py)."""
import pytest

from ctrfs.fsck.checks import Checker

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
