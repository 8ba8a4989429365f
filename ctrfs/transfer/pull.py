"""Pull an image pushed file by file (spec/TRANSFER.md): the index first; then, for each
file content, a file of the same size and sha256 on the device (in any image) if there
is one, else the frames holding its parts, fetched as byte ranges of their blobs (a blob
mostly needed is fetched whole, and its sha256 checked); each part is checked against its
sha256 and the whole file against its id before its bytes are written.  The tree is
applied through the importer's applier as one image with no parent."""
import contextlib
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

    def __init__(self, engine, wanted_sizes, pause):
        self.engine = engine
        self.by_size = {}
        self.hashed = {}
        for snap, e in engine.snapshots():
            if e["kind"] != C.SNAP_IMAGE or not e["root"][0]:
                continue
            pause()
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


GAP = 4 << 10         # needed frames closer than this are fetched in one range
WHOLE = 0.8           # a blob more than this much needed is fetched whole


class Blobs:
    """The frames a pull needs, fetched into `keep` before the tree is applied: a range
    file per span of nearby frames (BLOBHEX.START-END), or the whole blob (BLOBHEX, its
    sha256 checked).  They stay there until the pull succeeds, so a pull that failed or was
    killed uses them again (a whole blob after checking it again; a range through its
    parts' sha256, and a range whose part fails is deleted so the next try fetches it)."""

    def __init__(self, store, rows, keep):
        self.store, self.rows, self.keep = store, rows, keep
        self.spans = {}           # blob number -> [(start, end, path)] fetched
        self.bytes = 0            # fetched from the store
        self.kept = 0             # spans an earlier try had fetched

    def plan(self, parts):
        """[(blob, start, end)] byte ranges that hold these parts."""
        by_blob = {}
        for bi, off, frame, _n, _sha in parts:
            by_blob.setdefault(bi, set()).add((off, off + frame))
        plan = []
        for bi, spans in sorted(by_blob.items()):
            size = self.rows[bi][1]
            spans = sorted(spans)
            if sum(e - s for s, e in spans) > size * WHOLE:
                plan.append((bi, 0, size))
                continue
            start, end = spans[0]
            for s, e in spans[1:]:
                if s - end > GAP:
                    plan.append((bi, start, end))
                    start = s
                end = max(end, e)
            plan.append((bi, start, end))
        return plan

    def fetch(self, plan, progress=None):
        for i, (bi, start, end) in enumerate(plan, 1):
            self.spans.setdefault(bi, []).append((start, end, self._get(bi, start, end)))
            if progress:
                progress.status(f"{i}/{len(plan)} ranges ({self.kept} kept from an earlier try)")

    def _get(self, bi, start, end):
        digest, size = self.rows[bi]
        whole = (start, end) == (0, size)
        path = os.path.join(self.keep, digest.split(":", 1)[1] + ("" if whole else f".{start}-{end}"))
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = f.read(end - start + 1)
            if len(data) == end - start and (not whole or "sha256:" + hashlib.sha256(data).hexdigest() == digest):
                self.kept += 1
                return path
        data = self.store.get(digest, size, X.BLOB_MAX) if whole else self.store.get_range(digest, start, end - start)
        self.bytes += len(data)
        with open(path + ".new", "wb") as f:
            f.write(data)
        os.replace(path + ".new", path)
        return path

    def part(self, bi, off, frame, n, sha):
        """The n bytes of one part, decompressed from its frame and checked."""
        for start, end, path in self.spans.get(bi, ()):
            if start <= off and off + frame <= end:
                break
        else:
            raise AssertionError("a part outside the planned ranges")
        with open(path, "rb") as f:
            f.seek(off - start)
            data = f.read(frame)
        what = f"blob {self.rows[bi][0][:19]}..."
        data = X.decompress(data, n, what)
        if len(data) != n or "sha256:" + hashlib.sha256(data).hexdigest() != sha:
            os.unlink(path)
            raise BadImageError(f"{what}: a part does not match its sha256")
        return data


def events(entries, contents, local, found, blobs, counts, progress=None):
    """The importer's events; found: content id -> the device's copy (LocalContents key) or None."""
    for entry, cid in entries:
        if progress:
            progress.status(f"{counts['fetched']} files fetched, {counts['local']} on the device")
        yield entry
        if entry.kind != T.FILE or not entry.size:
            continue
        c = contents[cid]
        if found[cid] is not None:
            counts["local"] += 1
            yield from local.read(found[cid], c["size"])
            continue
        counts["fetched"] += 1
        whole, off = hashlib.sha256(), 0
        for part in c["parts"]:
            data = blobs.part(*part)
            n = len(data)
            whole.update(data)
            yield off, data
            off += n
        if "sha256:" + whole.hexdigest() != cid:
            raise BadImageError(f"{show(entry.path)}: the content does not match its id")


def pull(engine, importer, store, manifest_raw, name, keep, progress=None):
    """Import the transfer image of manifest_raw as `name`; returns (root, counts).  keep:
    where fetched frames wait for a retry (Blobs)."""
    # inside a daemon, its requests run while the pull waits on the store and between lookups
    idle = importer.idle or contextlib.nullcontext
    pause = importer.pause or (lambda: None)
    index_desc, config_desc = read_manifest(manifest_raw)
    with idle():
        config_raw = store.get(config_desc["digest"], config_desc["size"], CONFIG_MAX)
        raw = store.get(index_desc["digest"], index_desc["size"], X.INDEX_MAX)
    try:
        config = json.loads(config_raw)
    except (ValueError, UnicodeDecodeError):
        raise BadImageError("transfer config: not JSON") from None
    entries, contents, rows = X.decode_index(raw)
    oci_config = config.get("image") if isinstance(config, dict) else None
    used = {cid for _e, cid in entries if cid is not None and contents[cid]["size"]}
    local = LocalContents(engine, {contents[cid]["size"] for cid in used}, pause)
    blobs = Blobs(store, rows, keep)
    found = {}
    for cid in sorted(used):
        pause()
        found[cid] = local.find(cid, contents[cid]["size"])
    plan = blobs.plan(part for cid, key in found.items() if key is None for part in contents[cid]["parts"])
    with idle():
        blobs.fetch(plan, progress)
    counts = {"files": sum(1 for e, _c in entries if e.kind == T.FILE), "local": 0, "fetched": 0}
    root = importer.import_events(events(entries, contents, local, found, blobs, counts, progress), name, "transfer",
                                  config=oci_config.encode() if isinstance(oci_config, str) else None)
    counts["blobs"] = len(blobs.spans)
    counts["ranges"] = len(plan)
    counts["kept"] = blobs.kept
    counts["bytes"] = blobs.bytes + index_desc["size"] + config_desc["size"]
    return root, counts
