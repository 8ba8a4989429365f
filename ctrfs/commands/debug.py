"""ctrfs debug dump-super|dump-checkpoints|dump-node|dump-segment|dump-tree: on-disk
structures as text (the dumps themselves are in ctrfs/debug.py)."""
import sys

from ..tool import nonneg_int, note_unlocked, open_engine_readonly, open_readonly


def add_parser(sub):
    s = sub.add_parser("debug", help="print on-disk structures")
    dsub = s.add_subparsers(dest="what", metavar="WHAT", required=True)
    for what, helptext in (("dump-super", "both superblocks"), ("dump-checkpoints", "both checkpoint slots")):
        d = dsub.add_parser(what, help=helptext)
        d.add_argument("device", metavar="DEVICE")
    d = dsub.add_parser("dump-node", help="the tree node stored at block PADDR")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("paddr", metavar="PADDR", type=nonneg_int)
    d = dsub.add_parser("dump-segment", help="log units and summaries of segment N")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("segment", metavar="N", type=nonneg_int)
    d = dsub.add_parser("dump-tree", help="every item of an image/tree, or of a system tree")
    d.add_argument("device", metavar="DEVICE")
    d.add_argument("name", metavar="NAME", nargs="?")
    d.add_argument("--system", choices=("snap", "ca", "usage", "remap"), help="a system tree instead")
    s.set_defaults(func=run)


def run(args):
    """Superblock, checkpoint and node dumps read the device directly, so they work on a
    device too damaged to open; segment and tree dumps need the engine."""
    from .. import debug

    out = sys.stdout
    if args.what in ("dump-segment", "dump-tree"):
        engine, locked = open_engine_readonly(args.device)
        dev = engine.dev
    else:
        dev, locked = open_readonly(args.device)
    try:
        note_unlocked(locked)
        if args.what == "dump-super":
            return debug.dump_super(dev, out)
        if args.what == "dump-checkpoints":
            return debug.dump_checkpoints(dev, out)
        if args.what == "dump-node":
            return debug.dump_node(dev, args.paddr, out)
        if args.what == "dump-segment":
            return debug.dump_segment(engine, args.segment, out)
        return debug.dump_tree(engine, args.name, args.system, out)
    finally:
        dev.close()
