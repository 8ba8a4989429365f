"""The subcommands of `ctrfs`, one module each: `add_parser(sub)` declares its arguments,
`run(args)` does the work and returns the exit code.  The order here is `--help`'s.

Modules are named, not imported: `ctrfs images DEV` loads the images module only, not the
OCI import and export machinery (tar, gzip, zstandard) every other command pulls in, so
a tool starts in the time its own work needs."""
import importlib

COMMANDS = {
    "images": "ctrfs.commands.images",
    "df": "ctrfs.commands.df",
    "import": "ctrfs.oci.cli_import",
    "export": "ctrfs.oci.cli_export",
    "pull": "ctrfs.registry.cli_pull",
    "push": "ctrfs.registry.cli_push",
    "commit": "ctrfs.commands.commit",
    "tag": "ctrfs.commands.tag",
    "clone": "ctrfs.commands.clone",
    "rm": "ctrfs.commands.rm",
    "gc": "ctrfs.commands.gc",
    "debug": "ctrfs.commands.debug",
}


def modules(argv):
    """The command modules a command line needs: the one it names, or all of them (for
    --help, or to let the parser list the choices when the name is wrong)."""
    named = next((a for a in argv if not a.startswith("-")), None)
    names = [named] if named in COMMANDS else list(COMMANDS)
    return [importlib.import_module(COMMANDS[n]) for n in names]
