"""ctrfs rm DEVICE NAME...: delete images or trees of an unmounted device; ctrfs's own
trees (@default, @clone/...) only with --force."""
import os

from .. import catalogue
from ..tool import open_engine_rw


def add_parser(sub):
    s = sub.add_parser("rm", help="delete images or trees (device not mounted)")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("names", metavar="NAME", nargs="+")
    s.add_argument("--force", action="store_true",
                   help="also delete ctrfs's own trees (@default, @clone/...)")
    s.set_defaults(func=run)


def run(args):
    engine = open_engine_rw(args.device)
    try:
        notes = catalogue.remove(engine, [os.fsencode(n) for n in args.names], force=args.force)
        engine.commit()
    finally:
        engine.close()
    for note in notes:
        print(note)
    return 0
