"""OCI images in and out of ctrfs: layouts and archives (layout), tar layers (tarlayer), applying them (apply, importer); layers from tree diffs (export, tarwriter, dirwriter)."""
