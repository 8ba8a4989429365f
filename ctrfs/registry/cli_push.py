"""`ctrfs push DEVICE NAME [docker://]HOST/REPO[:TAG] [--format oci]`: an image to a
registry as an ordinary OCI image, the layers `ctrfs export --format oci` writes (one per
image of NAME's parent chain, gzip).  Blobs the repository already has (HEAD) are not
sent; one another repository of the same registry holds is mounted from it when NAME was
pulled from there; the manifest goes last, so the tag never names an incomplete image.
An imported layer the repository holds (or can mount) as the blob it came in is not
written again at all: the manifest names that blob, as containers/image reuses blobs."""
import contextlib
import json
import os
import shutil
import sys
import tempfile

HELP = "push an image to an OCI registry as an ordinary OCI image"


def add_parser(sub):
    from .options import add_remote_options

    s = sub.add_parser("push", help=HELP, description=HELP + ".  Reads the device's last "
                       "checkpoint (it may be mounted).")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("name", metavar="NAME")
    s.add_argument("remote", metavar="[docker://]HOST[:PORT]/REPO[:TAG] | dir:PATH[:TAG]")
    s.add_argument("--format", choices=("oci", "ctrfs"), help="what travels: an ordinary OCI image "
                   "(default for a registry), or ctrfs's file-level transfer (the only one for dir:PATH)")
    s.add_argument("--mount-from", metavar="REPO", help="a repository of the same registry to mount "
                   "blobs from (default: NAME's own, when NAME is HOST/REPO:TAG of this registry)")
    s.add_argument("--compress", choices=("gzip", "none"), default="gzip", help="layer compression")
    add_remote_options(s)
    s.set_defaults(func=run)
    return s


def run(args):
    from .. import catalogue
    from ..errors import RegistryError, UsageError
    from ..oci.export import MT_MANIFEST, export_oci, image_chain
    from ..oci.progress import ImportProgress
    from .options import open_client
    from .reference import parse_dir, parse_remote

    if parse_dir(args.remote) or args.format == "ctrfs":
        return push_transfer(args)
    remote = parse_remote(args.remote)
    if remote.digest:
        raise UsageError(f"{args.remote}: push to a tag, not a digest (the registry names the digest)")
    client = open_client(args, remote)
    try:
        with scratch_dir() as tmp:
            mount_from, offered = None, {}

            def offer(d):
                """'there' or 'mounted' when the repository holds the blob or could mount
                it, else None; remembered, so a blob is asked about once."""
                if d["digest"] not in offered:
                    if client.blob_exists(remote.repo, d["digest"]):
                        offered[d["digest"]] = "there"
                    elif mount_from and client.mount_blob(remote.repo, d["digest"], mount_from):
                        offered[d["digest"]] = "mounted"
                    else:
                        offered[d["digest"]] = None
                return offered[d["digest"]]

            with image_of(args) as (engine, name):
                image_chain(engine, name)
                mount_from = args.mount_from or _mount_source(name, remote)
                layout = os.path.join(tmp, "oci")
                os.mkdir(layout)
                manifest_desc, _n = export_oci(engine, name, layout, remote.tag,
                                               compress=args.compress != "none",
                                               reuse=lambda d: offer(d) is not None)
            blobs = os.path.join(layout, "blobs", "sha256")
            with open(os.path.join(blobs, manifest_desc["digest"].split(":", 1)[1]), "rb") as f:
                manifest = f.read()
            doc = json.loads(manifest)
            sent, skipped, mounted = 0, 0, 0
            descs = doc["layers"] + [doc["config"]]
            progress = ImportProgress(sys.stderr, unit="sent") \
                if not args.quiet and sys.stderr.isatty() else None
            if progress:
                progress.start(str(remote))
            for i, d in enumerate(descs, 1):
                if progress and i <= len(doc["layers"]):
                    progress.layer(i, len(doc["layers"]), "")
                got = offer(d)
                if got == "there":
                    skipped += 1
                elif got == "mounted":
                    mounted += 1
                else:
                    client.upload_blob(remote.repo, d["digest"], os.path.join(blobs, d["digest"].split(":", 1)[1]))
                    sent += 1
                    if progress:
                        progress.bytes(d["size"])
            digest = client.put_manifest(remote.repo, remote.tag, manifest, MT_MANIFEST)
            if progress:
                progress.close()
    finally:
        client.close()
    if digest and digest != manifest_desc["digest"]:
        raise RegistryError(f"{remote}: the registry stored the manifest as {digest}, "
                            f"not {manifest_desc['digest']}")
    if not args.quiet:
        print(f"pushed {catalogue.shown(name)} to {remote}: {sent} blob{'s' * (sent != 1)} sent, "
              f"{skipped} already there, {mounted} mounted, {client.sent} bytes, "
              f"manifest {manifest_desc['digest']}")
    return 0


def _mount_source(name, remote):
    """The repository NAME came from, when it is on remote's registry and is another one
    (an image pulled as HOST/REPO:TAG keeps that name): its blobs can be mounted."""
    from .. import catalogue
    try:
        ref = catalogue.parse_reference(name)
    except catalogue.BadNameError:
        return None
    host, sep, repo = ref.name.partition("/")
    if sep and host == remote.host and repo != remote.repo:
        return repo
    return None



def push_transfer(args):
    """--format ctrfs: the file-level transfer to a registry or a dir:PATH."""
    from .. import catalogue
    from ..errors import UsageError
    from ..oci.progress import ImportProgress
    from ..transfer.push import push
    from ..transfer.stores import DirStore, RegistryStore
    from .options import open_client
    from .reference import parse_dir, parse_remote

    if args.format == "oci":
        raise UsageError("dir:PATH takes the ctrfs transfer only (an OCI layout is `ctrfs export --format oci`)")
    where = parse_dir(args.remote)
    client = None
    if where:
        store, tag = DirStore(where[0], create=True), where[1]
    else:
        remote = parse_remote(args.remote)
        if remote.digest:
            raise UsageError(f"{args.remote}: push to a tag, not a digest")
        client = open_client(args, remote)
        store, tag = RegistryStore(client, remote.repo), remote.tag
    progress = None
    if not args.quiet and sys.stderr.isatty():
        progress = (ImportProgress(sys.stderr, unit="of file contents read"), ImportProgress(sys.stderr, unit="sent"))
        for p in progress:
            p.start(args.remote)
    try:
        with scratch_dir() as tmp, image_of(args) as (engine, name):
            counts = push(engine, name, store, tag, tmp, progress)
    finally:
        if client is not None:
            client.close()
    if not args.quiet:
        print(f"pushed {catalogue.shown(name)} to {args.remote} (ctrfs): {counts['files']} files, "
              f"{counts['new']} new contents, {counts['reused']} already there; "
              f"{counts['sent']} blobs sent, {counts['skipped']} skipped")
    return 0


@contextlib.contextmanager
def scratch_dir():
    """A temporary directory for the blobs of a push ($TMPDIR, else /var/tmp: layers are big)."""
    tmp = tempfile.mkdtemp(prefix="ctrfs-push-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def image_of(args):
    """(engine, stored name) of NAME in DEVICE's last checkpoint (the device may be mounted)."""
    from .. import catalogue
    from ..tool import note_unlocked, open_engine_readonly

    engine, locked = open_engine_readonly(args.device)
    try:
        note_unlocked(locked)
        yield engine, catalogue.resolve(engine, args.name)
    finally:
        engine.close()
