"""ctrfs gc DEVICE: delete the layer snapshots that no image or tree needs any more (after
`ctrfs rm` of the images above them), so their blocks go back to free space."""
from .. import catalogue, diskusage
from ..tool import format_size, open_engine_rw


def add_parser(sub):
    s = sub.add_parser("gc", help="free layers no image or tree needs (device not mounted)")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("-n", "--dry-run", action="store_true", help="list them, delete nothing")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=run)


def run(args):
    engine = open_engine_rw(args.device)
    try:
        layers = catalogue.unneeded_layers(engine)
        before = diskusage.stored_data_blocks(engine)
        if layers and not args.dry_run:
            for key in layers:
                engine.delete(key)
            engine.commit()
        freed = (before - diskusage.stored_data_blocks(engine)) * engine.block_size
    finally:
        engine.close()
    if not args.quiet:
        for key in layers:
            print(f"{'would delete' if args.dry_run else 'deleted'} {catalogue.shown(key)}")
        if not args.dry_run:
            print(f"{len(layers)} layer{'s' * (len(layers) != 1)} deleted, "
                  f"{format_size(freed)} of file data freed")
    return 0
