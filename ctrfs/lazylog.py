"""A logger that imports logging on first use: the mount helper's common path (a later
mount, served by a running daemon) logs nothing, and logging costs ~10 ms to import, a
quarter of a container start."""


class LazyLogger:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        import logging
        return getattr(logging.getLogger(self._name), attr)


def get(name):
    return LazyLogger(name)
