"""One daemon per device serving many trees (spec/DESIGN.md, "One daemon per device").

The daemon owns the device's engine and one FUSE session, mounted at a hidden per-device
directory whose root lists the served trees (views) by slot number; every user-visible
mount is a bind mount of one of them.

  kino      kernel inode numbers: view slot in the high bits, on-disk inode below
  views     a served tree: its FileSystem, its fs.Operations, its bind targets
  mux       the pyfuse3 Operations of the session: routes each request to its view
  control   the control socket: paths, the JSON-line protocol, the client side
  server    the daemon's side of the socket: serve / bound / release / run requests
  binds     bind mounts, the mount table, the utab lines
  start     what mount.ctrfs calls: find the device's daemon, or become it
"""
