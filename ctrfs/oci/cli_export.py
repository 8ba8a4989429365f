"""`ctrfs export DEVICE NAME DEST`: an image as a rootfs tar, a directory or an OCI image
layout.  Reads the device's last checkpoint (it may be mounted)."""
import os
import sys

from ..errors import UsageError

FORMATS = ("tar", "dir", "oci")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def add_parser(subparsers):
    s = subparsers.add_parser(
        "export", help="write an image out as a rootfs tar, a directory or an OCI image layout",
        description="Export image NAME.  tar: the whole tree as one tar (DEST a .tar, .tar.gz or "
                    "- for standard output); dir: the tree into directory DEST; oci: an OCI image "
                    "layout in directory DEST, one layer per image of NAME's parent chain.  DEST must "
                    "not exist or be empty.")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("name", metavar="NAME")
    s.add_argument("dest", metavar="DEST")
    s.add_argument("--format", choices=FORMATS,
                   help="default: tar when DEST ends in .tar/.tar.gz/.tgz or is -")
    s.add_argument("--compress", choices=("gzip", "none"),
                   help="layer compression (oci: default gzip; tar: gzip for .tar.gz/.tgz)")
    s.add_argument("--tag", help="oci: the layout's tag (org.opencontainers.image.ref.name); "
                                 "default NAME's tag, else 'latest'")
    s.add_argument("--arch", help="oci: the config's architecture (default: this machine's)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=run)


def pick_format(args):
    if args.format:
        fmt = args.format
    elif args.dest == "-" or args.dest.endswith(TAR_SUFFIXES):
        fmt = "tar"
    else:
        raise UsageError(f"{args.dest}: not a .tar file or -: say --format dir or --format oci")
    if fmt != "tar" and args.dest == "-":
        raise UsageError(f"--format {fmt} needs a directory, not -")
    return fmt


def run(args):
    from .. import catalogue
    from ..tool import note_unlocked, open_engine_readonly
    from .dirwriter import export_dir
    from .export import export_oci, export_tar, image_chain, new_directory, new_file
    from .progress import ImportProgress

    fmt = pick_format(args)
    engine, locked = open_engine_readonly(args.device)
    try:
        note_unlocked(locked)
        name = catalogue.resolve(engine, args.name)
        chain = image_chain(engine, name)          # "no such image" before DEST is touched
        if fmt == "oci":
            tag = args.tag or catalogue.split_key(name)[1] or "latest"
            progress = ImportProgress(sys.stderr, unit="of layers written") \
                if not args.quiet and sys.stderr.isatty() else None
            steps = iter(range(1, len(chain) + 1))

            def on_layer(_snap, desc):
                progress.layer(next(steps), len(chain), "")
                progress.bytes(desc["size"])

            if progress:
                progress.start(catalogue.shown(name))
            try:
                with new_directory(args.dest) as tmp:
                    os.chmod(tmp, 0o755)
                    manifest, nlayers = export_oci(engine, name, tmp, tag, compress=args.compress != "none",
                                                   arch=args.arch, progress=on_layer if progress else None)
            finally:
                if progress:
                    progress.close()
            said = f"{nlayers} layer{'s' * (nlayers != 1)}, manifest {manifest['digest']}, tag {tag}"
        elif fmt == "dir":
            with new_directory(args.dest) as tmp:
                n = export_dir(engine, name, tmp)
            said = f"{n} entries"
        else:
            gz = args.compress == "gzip" or (args.compress is None and args.dest.endswith((".gz", ".tgz")))
            if args.dest == "-":
                out = sys.stdout.buffer
                export_tar(engine, name, out, compress=gz)
                out.flush()
                return 0
            with new_file(args.dest) as f:
                export_tar(engine, name, f, compress=gz)
            said = "rootfs tar"
    finally:
        engine.close()
    if not args.quiet:
        print(f"exported {args.name} to {args.dest} ({fmt}: {said})", file=sys.stderr)
    return 0
