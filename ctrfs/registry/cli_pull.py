"""`ctrfs pull DEVICE [docker://]HOST/REPO[:TAG] [--name NAME[:TAG]]`: an image from a
registry, through the importer.  A layer stack the device already holds (by ChainID, from
the config's diff_ids) is not downloaded at all.  Each new layer is committed as its
`@layer/<ChainID>` snapshot once it is in and verified, so a pull that fails or is killed
later resumes without fetching it again; the image itself appears only when every layer
is in (`ctrfs gc` removes layers no image came to stand on)."""
import os
import sys

HELP = "pull an image from an OCI registry (OCI or Docker schema 2; gzip, zstd or plain layers)"


def add_parser(sub):
    from .options import add_remote_options

    s = sub.add_parser("pull", help=HELP, description=HELP + ".  On a mounted device the "
                       "device's daemon runs it (with this shell's credentials).")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("remote", metavar="[docker://]HOST[:PORT]/REPO[:TAG|@sha256:HEX] | dir:PATH[:TAG]")
    s.add_argument("--name", metavar="NAME[:TAG]", help="the image's name on the device "
                   "(default HOST[:PORT]/REPO:TAG as given; for a digest, the tag sha256-HEX)")
    add_remote_options(s)
    s.set_defaults(func=run)
    return s


def run(args):
    from ..oci.names import stem
    from ..transfer.pull import read_manifest
    from ..transfer.stores import DirStore, RegistryStore
    from .options import open_client
    from .reference import parse_dir, parse_remote

    where = parse_dir(args.remote)
    if where:
        path, tag = where
        store = DirStore(path)
        return pull_transfer(args, store, path, image_name(args, f"{stem(path)}:{tag}", tag), store.manifest(tag))
    remote = parse_remote(args.remote)
    name = image_name(args, f"{remote.host}/{remote.repo}:{remote.tag}", remote.tag)
    client = open_client(args, remote)
    try:
        raw = client.get_manifest(remote.repo, remote.ref)[0]
        if read_manifest(raw) is not None:
            return pull_transfer(args, RegistryStore(client, remote.repo), str(remote), name, raw)
        return pull_oci(args, client, remote, name)
    finally:
        client.close()


def image_name(args, default, tag):
    from ..oci.names import check_name
    if not args.name:
        return check_name(default).encode()
    if ":" not in args.name.rpartition("/")[2]:
        return check_name(f"{args.name}:{tag}").encode()
    return check_name(args.name).encode()


def pull_oci(args, client, remote, name):
    from ..oci.allornothing import import_on
    from ..oci.importer import SCRATCH_PREFIX, Importer
    from ..oci.progress import ImportProgress
    from .source import registry_image

    image = registry_image(client, remote)
    progress = ImportProgress(sys.stderr) if not args.quiet and sys.stderr.isatty() else None

    def work(engine):
        imp = Importer(engine, progress=progress, on_layer=lambda _name: engine.commit())
        if progress:
            progress.start(str(remote))
        return imp.import_image(image, name)

    # what a failure leaves: the layers verified so far (a retry resumes from them),
    # never the image nor the importer's scratch tree
    root, layers, new = import_on(args.device, work, lambda n, before: n.startswith(SCRATCH_PREFIX), progress)
    if not args.quiet:
        print(f"pulled {remote} as {name.decode()}: {layers} layer{'s' * (layers != 1)} ({new} fetched, "
              f"{layers - new} already on the device), {client.received} bytes received, root {root.hex()[:12]}")
    return 0


def pull_transfer(args, store, shown, name, raw):
    """A ctrfs file-level transfer image: one tree, contents the device has are not fetched.
    What is fetched waits in $TMPDIR/ctrfs-pull-<manifest digest> until the image is in, so
    a pull that failed or was killed resumes without fetching it again."""
    import hashlib
    import shutil

    from ..oci.allornothing import import_on
    from ..oci.importer import Importer
    from ..oci.progress import ImportProgress
    from ..transfer.pull import pull

    progress = ImportProgress(sys.stderr) if not args.quiet and sys.stderr.isatty() else None
    base = os.environ.get("TMPDIR", "/var/tmp")
    keep = os.path.join(base, "ctrfs-pull-" + hashlib.sha256(raw).hexdigest()[:32])
    os.makedirs(keep, exist_ok=True)

    def work(engine):
        if progress:
            progress.start(shown)
        imp = Importer(engine, progress=progress)
        return pull(engine, imp, store, raw, name, keep, progress)

    root, counts = import_on(args.device, work, lambda n, before: n not in before, progress)
    shutil.rmtree(keep, ignore_errors=True)
    if not args.quiet:
        print(f"pulled {shown} as {name.decode()} (ctrfs): {counts['files']} files, {counts['fetched']} "
              f"fetched, {counts['local']} already on the device; {counts['ranges']} ranges of "
              f"{counts['blobs']} blobs ({counts['kept']} kept from an earlier try), {counts['bytes']} bytes received, "
              f"root {root.hex()[:12]}")
    return 0
