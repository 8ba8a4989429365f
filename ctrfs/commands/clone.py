"""ctrfs clone DEVICE SRC DST: an O(1) copy of an image or tree (writable unless --image)."""
import os

from .. import catalogue
from ..format import constants as C
from ..tool import open_engine_rw


def add_parser(sub):
    s = sub.add_parser("clone", help="clone an image or tree (device not mounted)")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("src", metavar="SRC")
    s.add_argument("dst", metavar="DST")
    s.add_argument("--image", action="store_true", help="make DST an immutable image (default: writable)")
    s.set_defaults(func=run)


def run(args):
    engine = open_engine_rw(args.device)
    try:
        kind = C.SNAP_IMAGE if args.image else C.SNAP_WRITABLE
        catalogue.clone(engine, os.fsencode(args.src), os.fsencode(args.dst), kind)
        engine.commit()
    finally:
        engine.close()
    return 0
