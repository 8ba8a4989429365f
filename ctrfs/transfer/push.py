"""Push an image file by file (spec/TRANSFER.md): the tree's metadata into an index,
file contents into object blobs (small files packed whole, large ones in pieces), zstd
compressed.  Contents an earlier image of the same remote repository already carries
(read from the indexes of its tags) are referenced where they are, not sent again; the
manifest lists every blob the index needs, so the registry's garbage collector keeps them."""
import base64
import hashlib
import os
import stat

import zstandard

from ..errors import BadImageError, RegistryError
from ..filesystem import FileSystem
from ..oci import imagemeta
from ..oci.export import MT_MANIFEST, canonical_json, fs_lookup
from ..treediff import ENTRY, LINK, tree_changes
from . import index as X
from .pull import read_manifest

MANIFEST_LIMIT = 4 << 20
TAGS_READ = 64               # earlier images consulted for contents the remote has


def known_contents(store):
    """{content id: (content, [blob rows])} from the indexes of the store's tags."""
    known = {}
    for tag in store.tags()[:TAGS_READ]:
        try:
            found = read_manifest(store.manifest(tag))
        except (BadImageError, RegistryError):
            continue
        if found is None:
            continue
        d = found[0]
        _entries, contents, blobs = X.decode_index(store.get(d["digest"], d["size"], X.INDEX_MAX))
        for cid, c in contents.items():
            known.setdefault(cid, (c, blobs))
    return known


class Packer:
    """Contents into object blobs written to `tmp`, each part its own zstd frame: small
    contents packed several to a blob, large ones cut into pieces of a blob each."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.blobs = []           # [digest, size]
        self.paths = {}           # digest -> file of the blob (new ones)
        self.rows = {}            # digest of a blob an earlier index lists -> our blob number
        self.pack = bytearray()
        self.pending = []         # parts waiting in the current pack
        self.cz = zstandard.ZstdCompressor(level=X.ZSTD_LEVEL)

    def add_small(self, data, sha):
        frame = self.cz.compress(data)
        part = [None, len(self.pack), len(frame), len(data), sha]
        self.pending.append(part)
        self.pack += frame
        if len(self.pack) >= X.PACK_SIZE:
            self.close_pack()
        return [part]

    def add_piece(self, data, sha):
        frame = self.cz.compress(data)
        return [self._blob(frame), 0, len(frame), len(data), sha]

    def close_pack(self):
        if self.pack:
            bi = self._blob(bytes(self.pack))
            for part in self.pending:
                part[0] = bi
            self.pack.clear()
            self.pending = []

    def _blob(self, comp):
        digest = "sha256:" + hashlib.sha256(comp).hexdigest()
        path = os.path.join(self.tmp, digest.split(":", 1)[1])
        with open(path, "wb") as f:
            f.write(comp)
        self.paths[digest] = path
        self.blobs.append([digest, len(comp)])
        return len(self.blobs) - 1

    def reuse(self, content, blobs):
        """An earlier index's content: its parts, renumbered into our blob list."""
        parts = []
        for bi, off, frame, n, sha in content["parts"]:
            key = blobs[bi][0]
            if key not in self.rows:
                self.blobs.append(list(blobs[bi]))
                self.rows[key] = len(self.blobs) - 1
            parts.append([self.rows[key], off, frame, n, sha])
        return {"size": content["size"], "parts": parts}


def build(engine, name, tmp, known, progress=None):
    """(index bytes, Packer, counts) of image `name`."""
    fs = FileSystem(engine, name, writable=False)
    packer = Packer(tmp)
    entries, contents, by_ino = [], {}, {}
    counts = {"files": 0, "new": 0, "reused": 0}
    for ch in tree_changes(engine, None, name):
        path = X.path_text(ch.path)
        if ch.kind == LINK:
            a = fs.getattr(fs_lookup(fs, ch.target))
            entries.append({"p": path, "k": X.T.HARDLINK, "l": X.path_text(ch.target), "m": stat.S_IMODE(a.mode),
                            "u": a.uid, "g": a.gid, "t": a.mtime_ns})
            continue
        assert ch.kind == ENTRY
        e = _entry(fs, ch.ino, path)
        if e["k"] == X.T.FILE:
            cid = by_ino.get(ch.ino) or _content(fs, ch.ino, contents, known, packer, counts, progress)
            by_ino[ch.ino] = cid
            e["c"] = cid
        entries.append(e)
    packer.close_pack()
    return X.encode_index(entries, contents, packer.blobs), packer, counts


_KIND = {stat.S_IFDIR: X.T.DIR, stat.S_IFREG: X.T.FILE, stat.S_IFLNK: X.T.SYMLINK,
         stat.S_IFCHR: X.T.CHAR, stat.S_IFBLK: X.T.BLOCK, stat.S_IFIFO: X.T.FIFO}


def _entry(fs, ino, path):
    a = fs.getattr(ino)
    e = {"p": path, "k": _KIND.get(stat.S_IFMT(a.mode)), "m": stat.S_IMODE(a.mode), "u": a.uid, "g": a.gid,
         "t": a.mtime_ns}
    if e["k"] is None:
        raise BadImageError(f"/{path}: a socket has no transfer form")
    if e["k"] in (X.T.CHAR, X.T.BLOCK):
        e["r"] = a.rdev
    if e["k"] == X.T.SYMLINK:
        e["l"] = X.path_text(bytes(fs.readlink(ino)))
    xattrs = {X.path_text(bytes(n)): base64.b64encode(fs.getxattr(ino, bytes(n))).decode()
              for n in fs.listxattr(ino)}
    if xattrs:
        e["x"] = xattrs
    return e


def _content(fs, ino, contents, known, packer, counts, progress):
    size = fs.getattr(ino).size
    if progress:
        progress.bytes(size)
        progress.status(f"{counts['files']} files read, {counts['new']} new contents, "
                        f"{counts['reused']} already there")
    whole = hashlib.sha256()
    chunks = []
    for off in range(0, size, X.PIECE_SIZE):
        piece = fs.read(ino, off, min(X.PIECE_SIZE, size - off))
        whole.update(piece)
        chunks.append(piece)
    cid = "sha256:" + whole.hexdigest()
    counts["files"] += 1
    if cid in contents:
        return cid
    if cid in known:
        contents[cid] = packer.reuse(*known[cid])
        counts["reused"] += 1
        return cid
    counts["new"] += 1
    if not size:
        parts = []
    elif size <= X.SMALL_FILE:
        parts = packer.add_small(b"".join(chunks), cid)
    else:
        parts = [packer.add_piece(c, "sha256:" + hashlib.sha256(c).hexdigest()) for c in chunks]
    contents[cid] = {"size": size, "parts": parts}
    return cid


def manifest_of(index_desc, config_desc, blobs):
    layers = [index_desc] + [{"mediaType": X.MT_OBJECTS, "digest": d, "size": n} for d, n in blobs]
    raw = canonical_json({"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": config_desc,
                          "layers": layers})
    if len(raw) > MANIFEST_LIMIT:
        raise BadImageError(f"the transfer manifest would be {len(raw)} bytes, more than registries take")
    return raw


def push(engine, name, store, tag, tmp, progress=None):
    """Push image `name` to store as `tag`; returns counts of contents and blobs.  progress:
    two ImportProgress lines (the contents read, then the blobs sent) or None."""
    known = known_contents(store)
    index, packer, counts = build(engine, name, tmp, known, progress and progress[0])
    files = {}
    index_digest = "sha256:" + hashlib.sha256(index).hexdigest()
    files[index_digest] = _file(tmp, index)
    oci = imagemeta.read_config(FileSystem(engine, name, writable=False).tree)
    config = canonical_json({"ctrfsTransfer": X.VERSION, "index": index_digest,
                             "image": oci.decode("utf-8", "replace") if oci else None})
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    files[config_digest] = _file(tmp, config)
    manifest = manifest_of({"mediaType": X.MT_INDEX, "digest": index_digest, "size": len(index)},
                           {"mediaType": X.MT_CONFIG, "digest": config_digest, "size": len(config)},
                           packer.blobs)
    counts.update(blobs=len(packer.blobs), sent=0, skipped=0)
    todo = list(packer.paths.items()) + list(files.items())
    sending = progress and progress[1]
    if progress:
        progress[0].close()
    for digest, path in todo:
        if store.has(digest):
            counts["skipped"] += 1
        else:
            store.put(digest, path)
            counts["sent"] += 1
            if sending:
                sending.bytes(os.path.getsize(path))
        if sending:
            sending.status(f"{counts['sent']} blobs sent, {counts['skipped']} already there, of {len(todo)}")
    store.put_manifest(tag, manifest)
    if sending:
        sending.close()
    return counts


def _file(tmp, data):
    path = os.path.join(tmp, "meta-" + hashlib.sha256(data).hexdigest())
    with open(path, "wb") as f:
        f.write(data)
    return path
