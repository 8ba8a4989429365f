"""Crash tests: the count of crash states checked, printed at the end of every run (the CI
log must show it, whatever pytest captures)."""
import pytest


class CrashCounter:
    def __init__(self):
        self.total = 0
        self.per_workload = {}

    def add(self, workload, n):
        self.total += n
        self.per_workload[workload] = self.per_workload.get(workload, 0) + n


_COUNTER = pytest.StashKey[CrashCounter]()


@pytest.fixture(scope="session")
def crash_counter(request):
    stash = request.config.stash
    if _COUNTER not in stash:
        stash[_COUNTER] = CrashCounter()
    return stash[_COUNTER]


def pytest_terminal_summary(terminalreporter, config):
    counter = config.stash.get(_COUNTER, None)
    if counter is None:
        return
    for name, n in sorted(counter.per_workload.items()):
        terminalreporter.write_line(f"crash states checked in {name}: {n}")
    terminalreporter.write_line(f"crash states checked: {counter.total}")
