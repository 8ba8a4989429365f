"""ctrfs: a content-addressed, log-structured file system for container images."""
__version__ = "0.1.0"
