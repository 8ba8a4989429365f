"""Pull an image pushed file by file (spec/TRANSFER.md): the index first; then, for each
file content, a file of the same size and sha256 on the device (in any image) if there
is one, else the object blobs holding its parts, each checked (blob sha256, part sha256,
then the whole file's) before its bytes are written.  The tree is applied through the
importer's applier as one image with no parent."""
import hashlib
import json
import os
import stat

from ..errors import BadImageError
from ..filesystem import FileSystem
from ..format import constants as C
from ..oci import tarlayer as T
from ..oci.apply import show
from ..oci.streams import split_digest
from ..treediff import ENTRY, tree_changes
from . import index as X

MANIFEST_MAX = 4 << 20
CONFIG_MAX = 16 << 20


def read_manifest(raw):
    """(index descriptor, config descriptor) of a transfer manifest; None for anything else
    (an ordinary image or index: the OCI path reads and judges it)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict) \
            or doc["config"].get("mediaType") != X.MT_CONFIG:
        return None
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers or not isinstance(layers[0], dict) \
            or layers[0].get("mediaType") != X.MT_INDEX:
        raise BadImageError("manifest: a ctrfs transfer manifest without its index")
    for d in (doc["config"], layers[0]):
        if not isinstance(d.get("digest"), str) or type(d.get("size")) is not int:
            raise BadImageError("manifest: malformed descriptor")
        split_digest(d["digest"])
    return layers[0], doc["config"]


class LocalContents:
    """Files already on the device, found by size and then sha256 (read through
    FileSystem): (snapshot name, inode) per content id."""

    def __init__(self, engine, wanted_sizes):
        self.engine = engine
        self.by_size = {}
        self.hashed = {}
        for snap, e in engine.snapshots():
            if e["kind"] != C.SNAP_IMAGE or not e["root"][0]:
                continue
            fs = FileSystem(engine, snap, writable=False)
            for ch in tree_changes(engine, None, snap):
                if ch.kind != ENTRY:
                    continue
                a = fs.getattr(ch.ino)
                if stat.S_ISREG(a.mode) and a.size in wanted_sizes and a.size:
                    self.by_size.setdefault(a.size, []).append((snap, ch.ino))
        self.fs = {}

    def _fs(self, snap):
        if snap not in self.fs:
            self.fs[snap] = FileSystem(self.engine, snap, writable=False)
        return self.fs[snap]

    def find(self, cid, size):
        for key in self.by_size.get(size, ()):
            if key not in self.hashed:
                fs = self._fs(key[0])
                h = hashlib.sha256()
                for off in range(0, size, 1 << 20):
                    h.update(fs.read(key[1], off, min(1 << 20, size - off)))
                self.hashed[key] = "sha256:" + h.hexdigest()
            if self.hashed[key] == cid:
                return key
        return None

    def read(self, key, size):
        fs = self._fs(key[0])
        for off in range(0, size, 1 << 20):
            yield off, fs.read(key[1], off, min(1 << 20, size - off))


class Blobs:
    """Object blobs fetched from the store, verified and kept decompressed in `tmp`.  Each
    fetched blob is also kept, as it came, in `keep` (named by its digest) until the pull
    succeeds: a pull that failed or was killed uses them again, after checking them, so
    what already arrived is not fetched twice."""

    def __init__(self, store, rows, tmp, keep=None):
        self.store, self.rows, self.tmp, self.keep = store, rows, tmp, keep
        self.have = {}
        self.bytes = 0
        self.kept = 0             # blobs an earlier pull had fetched

    def _fetch(self, digest, size):
        path = os.path.join(self.keep, digest.split(":", 1)[1]) if self.keep else None
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                comp = f.read(size + 1)
            if len(comp) == size and "sha256:" + hashlib.sha256(comp).hexdigest() == digest:
                self.kept += 1
                return comp
        comp = self.store.get(digest, size, X.BLOB_MAX)
        self.bytes += len(comp)
        if path:
            with open(path + ".new", "wb") as f:
                f.write(comp)
            os.replace(path + ".new", path)
        return comp

    def part(self, bi, off, n, sha):
        path = self.have.get(bi)
        if path is None:
            digest, size, usize = self.rows[bi]
            raw = X.decompress(self._fetch(digest, size), usize, f"blob {digest[:19]}...")
            if len(raw) != usize:
                raise BadImageError(f"blob {digest[:19]}...: {len(raw)} bytes, the index says {usize}")
            path = os.path.join(self.tmp, digest.split(":", 1)[1])
            with open(path, "wb") as f:
                f.write(raw)
            self.have[bi] = path
        with open(path, "rb") as f:
            f.seek(off)
            data = f.read(n)
        if "sha256:" + hashlib.sha256(data).hexdigest() != sha:
            raise BadImageError(f"blob {self.rows[bi][0][:19]}...: a part does not match its sha256")
        return data


def events(entries, contents, local, blobs, counts):
    for entry, cid in entries:
        yield entry
        if entry.kind != T.FILE or not entry.size:
            continue
        c = contents[cid]
        found = local.find(cid, c["size"]) if local else None
        if found is not None:
            counts["local"] += 1
            yield from local.read(found, c["size"])
            continue
        counts["fetched"] += 1
        whole, off = hashlib.sha256(), 0
        for bi, poff, n, sha in c["parts"]:
            data = blobs.part(bi, poff, n, sha)
            whole.update(data)
            yield off, data
            off += n
        if "sha256:" + whole.hexdigest() != cid:
            raise BadImageError(f"{show(entry.path)}: the content does not match its id")


def pull(engine, importer, store, manifest_raw, name, tmp, keep=None):
    """Import the transfer image of manifest_raw as `name`; returns (root, counts).  keep:
    where fetched blobs wait for a retry (Blobs)."""
    index_desc, config_desc = read_manifest(manifest_raw)
    try:
        config = json.loads(store.get(config_desc["digest"], config_desc["size"], CONFIG_MAX))
    except (ValueError, UnicodeDecodeError):
        raise BadImageError("transfer config: not JSON") from None
    raw = store.get(index_desc["digest"], index_desc["size"], X.INDEX_MAX)
    entries, contents, rows = X.decode_index(raw)
    oci_config = config.get("image") if isinstance(config, dict) else None
    sizes = {c["size"] for c in contents.values()}
    local = LocalContents(engine, sizes)
    blobs = Blobs(store, rows, tmp, keep)
    counts = {"files": sum(1 for e, _c in entries if e.kind == T.FILE), "local": 0, "fetched": 0}
    root = importer.import_events(events(entries, contents, local, blobs, counts), name, "transfer",
                                  config=oci_config.encode() if isinstance(oci_config, str) else None)
    counts["blobs"] = len(blobs.have)
    counts["kept"] = blobs.kept
    counts["bytes"] = blobs.bytes + index_desc["size"] + config_desc["size"]
    return root, counts
