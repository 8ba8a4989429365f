"""Images to and from OCI distribution registries: the HTTP client, credentials, and the
`ctrfs pull` / `ctrfs push` commands."""
