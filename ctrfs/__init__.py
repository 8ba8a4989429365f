"""ctrfs: a content-addressed, log-structured file system for container images."""
__version__ = "0.1.0"

# In the source tree ctrfs.format, ctrfs.fsck and ctrfs.mkfs are the top-level format/,
# fsck/ and mkfs/ (pyproject's package-dir; an installed wheel has them inside ctrfs/).
# Finding them through this package's path keeps the editable install a plain path entry:
# setuptools' own editable finder costs ~15 ms (pathlib, importlib.util) at every tool start.
if not __import__("os").path.isdir(__path__[0] + "/format"):
    __path__.append(__path__[0].rpartition("/")[0])


def version_line(prog):
    """What every ctrfs tool prints for -V / --version (e2fsprogs style)."""
    from .format.constants import FORMAT_VERSION
    return f"{prog} {__version__} (ctrfs format {FORMAT_VERSION})"
