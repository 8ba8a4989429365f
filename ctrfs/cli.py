"""The `ctrfs` command: images and trees on a device.  Each subcommand is a module of
ctrfs/commands/; what every tool shares (parsing, sizes, exit codes, opening devices,
finding mounts) is ctrfs/tool.py."""
import sys

from .commands import modules
from .tool import PROG, ToolParser, run_tool


def build_parser(argv=None):
    """The parser, with the subcommands argv needs (every one when argv is None)."""
    p = ToolParser(prog=PROG, description="Manage images and trees on a ctrfs device.")
    p.add_argument("-v", "--verbose", action="store_true", help="tracebacks for unexpected errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in modules([] if argv is None else argv):
        command.add_parser(sub)
    return p


def main(argv=None):
    from .daemon.tools import forward

    argv = sys.argv[1:] if argv is None else argv

    def body(args):
        # a device with a daemon: the command runs there, on the daemon's engine
        code = forward(args, argv)
        return args.func(args) if code is None else code
    return run_tool(PROG, build_parser(argv), body, argv)


if __name__ == "__main__":
    sys.exit(main())
