"""ctrfs tag DEVICE SRC DST: another name for an image (as `docker tag`): no data copied."""
from .. import catalogue
from ..tool import open_engine_rw


def add_parser(sub):
    s = sub.add_parser("tag", help="give an image another NAME[:TAG] (device not mounted)")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("src", metavar="SRC")
    s.add_argument("dst", metavar="DST")
    s.set_defaults(func=run)


def run(args):
    engine = open_engine_rw(args.device)
    try:
        catalogue.tag(engine, args.src, args.dst)
        engine.commit()
    finally:
        engine.close()
    return 0
