"""An image in a registry as an import source: the manifest (through an index to this
machine's platform), the config, and layers that stream from the registry only when the
importer asks for them (it does not for a layer stack the device already holds).  Every
blob is read through a CheckedReader: size and sha256 are checked before the layer's
last bytes are trusted."""
from ..errors import BadImageError
from ..oci.layout import INDEX_TYPES, MANIFEST_TYPES, manifest_image, platform_ok
from ..oci.streams import CheckedReader, read_all, split_digest
from .client import parse_json

NESTING = 2


def _platform_entry(index, what):
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise BadImageError(f"{what}: an index without manifests")
    for d in entries:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            raise BadImageError(f"{what}: malformed index entry")
        split_digest(d["digest"])
    mine = [d for d in entries if platform_ok(d)]
    if mine:
        return mine[0]
    if len(entries) == 1:
        return entries[0]
    found = ", ".join(sorted({f"{(d.get('platform') or {}).get('os')}/"
                              f"{(d.get('platform') or {}).get('architecture')}" for d in entries}))
    raise BadImageError(f"{what}: no image for this machine's platform (the index has {found})")


def registry_image(client, remote):
    """layout.Image of remote (a Remote) from client (a Client of remote.host)."""
    ref = remote.ref
    what = f"{remote}"
    for _depth in range(NESTING + 1):
        data, mt, digest = client.get_manifest(remote.repo, ref)
        doc = parse_json(data, f"{what}: manifest")
        kind = doc.get("mediaType") or mt
        if kind in INDEX_TYPES or (kind not in MANIFEST_TYPES and "manifests" in doc):
            ref = _platform_entry(doc, f"{what}: index")["digest"]
            what = f"{remote.host}/{remote.repo}@{ref[:19]}..."
            continue
        return manifest_image(str(remote), data, mt or None, f"{what}: manifest",
                              lambda d, w, limit: _small(client, remote.repo, d, w, limit),
                              lambda d, w: _blob(client, remote.repo, d, w))
    raise BadImageError(f"{what}: indexes nested too deep")


def _blob(client, repo, d, what):
    return CheckedReader(client.open_blob(repo, d["digest"]), what, d["digest"], d["size"])


def _small(client, repo, d, what, limit):
    if d["size"] > limit:
        raise BadImageError(f"{what}: {d['size']} bytes is more than the {limit} allowed")
    body = client.open_blob(repo, d["digest"])
    try:
        return read_all(body, what, d["digest"], d["size"], limit)
    finally:
        body.close()
