"""OCI images in and out of ctrfs: image layouts, layer tars, import and export."""
