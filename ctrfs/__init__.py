"""ctrfs: a content-addressed, log-structured file system for container images."""
__version__ = "0.1.0"


def version_line(prog):
    """What every ctrfs tool prints for -V / --version (e2fsprogs style)."""
    from .format.constants import FORMAT_VERSION
    return f"{prog} {__version__} (ctrfs format {FORMAT_VERSION})"
