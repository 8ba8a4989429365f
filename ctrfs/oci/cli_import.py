"""`ctrfs import DEVICE SOURCE [--name NAME[:TAG]] [-q]`: OCI layouts, docker-archives and
tar layers into a device, all or nothing."""
import sys

HELP = "import images: oci:DIR[:TAG], docker-archive:FILE[:REF], a tar layer, or - (stdin)"


def add_parser(sub):
    s = sub.add_parser("import", help=HELP, description=HELP + ".  Nothing is stored unless "
                       "every image of the source is in (device not mounted).")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("source", metavar="SOURCE",
                   help="oci:DIR[:TAG], docker-archive:FILE[:REF], FILE.tar[.gz|.zst] or -")
    s.add_argument("--name", metavar="NAME[:TAG]",
                   help="the image's name (default: from the source); without a tag, each tag of the source")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")
    s.add_argument("--single-thread", action="store_true", help=argparse_hidden())
    s.set_defaults(func=run)
    return s


def argparse_hidden():
    import argparse
    return argparse.SUPPRESS


def run(args):
    from .allornothing import import_on
    from .importer import Importer
    from .layout import open_source
    from .names import check_name, plan_names
    from .progress import ImportProgress

    kind, path, images = open_source(args.source, sys.stdin.buffer)
    if args.name:
        check_name(args.name)
    names = plan_names(kind, path, images, args.name)
    progress = ImportProgress(sys.stderr) if not args.quiet and sys.stderr.isatty() else None

    def work(engine):
        imp = Importer(engine, threads=not args.single_thread, progress=progress)
        done = []
        for img, name in zip(images, names):
            if progress:
                progress.start(name.decode())
            done.append((name, *imp.import_image(img, name)))
        return done

    done = import_on(args.device, work, lambda n, before: n not in before, progress)
    if not args.quiet:
        for name, root, layers, new in done:
            print(f"imported {name.decode()}: {layers} layer{'s' * (layers != 1)} "
                  f"({new} new), root {root.hex()[:12]}")
    return 0
