"""The file-level transfer of images between ctrfs devices through a registry or a directory (spec/TRANSFER.md)."""
