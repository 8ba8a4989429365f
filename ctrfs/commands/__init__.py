"""The subcommands of `ctrfs`, one module each: `add_parser(sub)` declares its arguments,
`run(args)` does the work and returns the exit code.  The order here is `--help`'s."""
from ..oci import cli_export, cli_import
from ..registry import cli_pull, cli_push
from . import clone, commit, debug, df, gc, images, rm, tag

COMMANDS = (images, df, cli_import, cli_export, cli_pull, cli_push, commit, tag, clone, rm, gc, debug)
