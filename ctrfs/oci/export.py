"""Export an image: one layer per snapshot of its parent chain, each the tree diff against
its parent (ctrfs/treediff.py), as an OCI image layout; or the whole tree as one rootfs tar.
Same image, same bytes: members in sorted order, times from the tree, gzip without a name or
time, JSON with sorted keys, `created` from the snapshots, never the clock."""
import contextlib
import hashlib
import json
import os
import platform
import shutil
import stat
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from isal import isal_zlib

from ..catalogue import LAYER_PREFIX
from ..errors import CtrfsError, FsError, UsageError
from ..filesystem import FileSystem
from ..format import constants as C
from ..treediff import ENTRY, LINK, OPAQUE, WHITEOUT, tree_changes
from . import imagemeta, recipe
from .tarwriter import (BLKTYPE, CHRTYPE, DIRTYPE, FIFOTYPE, LNKTYPE, REGTYPE, SYMTYPE,
                        TarWriter)

MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
WHITEOUT_PREFIX = b".wh."
OPAQUE_NAME = b".wh..wh..opq"
# ISA-L's best level: 10x zlib's default speed (374 against 35 MB/s on the corpus) for
# blobs about 4% bigger (C: 220.0 MB against 210.9); zlib at 6 was all of an export's time
GZIP_LEVEL = 3
READ_CHUNK = 1 << 20
BUFFER = 1 << 20             # tar bytes handed to the compressing thread at a time
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
          "s390x": "s390x", "riscv64": "riscv64"}


def host_arch():
    m = platform.machine()
    return ARCHES.get(m, m)


# ---- the parent chain ----------------------------------------------------------------------
def image_chain(engine, name):
    """Snapshot names from the base to `name`: parents are followed while they are images
    whose root is the one the child was made over (a changed or deleted parent ends it)."""
    e = engine.snapshot(name)
    if e is None:
        raise UsageError(f"no image or tree named {name.decode(errors='replace')!r}")
    chain = [name]
    seen = {name}
    while e["parent_name"]:
        parent = engine.snapshot(e["parent_name"])
        if parent is None or parent["kind"] != C.SNAP_IMAGE or parent["root"][1] != e["parent_root"] \
                or e["parent_name"] in seen:
            break
        chain.append(e["parent_name"])
        seen.add(e["parent_name"])
        e = parent
    return chain[::-1]


# ---- tar members of a change list -------------------------------------------------------------
def write_changes(tw, fs, changes):
    """The members of a layer (or of a whole rootfs): changes from ctrfs.treediff, file
    data and attributes read through FileSystem `fs` (the new tree)."""
    for ch in changes:
        if ch.kind == WHITEOUT:
            head, _sep, base = ch.path.rpartition(b"/")
            tw.add((head + b"/" if head else b"") + WHITEOUT_PREFIX + base, REGTYPE)
        elif ch.kind == OPAQUE:
            tw.add(ch.path + b"/" + OPAQUE_NAME, REGTYPE)
        elif ch.kind == LINK:
            a = fs.getattr(fs_lookup(fs, ch.target))
            tw.add(ch.path, LNKTYPE, mode=a.mode, uid=a.uid, gid=a.gid, mtime_ns=a.mtime_ns,
                   linkname=ch.target)
        else:
            assert ch.kind == ENTRY
            _member(tw, fs, ch.path, ch.ino)


def fs_lookup(fs, path):
    ino = C.ROOT_INO
    for part in path.split(b"/") if path else ():
        ino = fs.lookup(ino, part)
    return ino


def _member(tw, fs, path, ino):
    a = fs.getattr(ino)
    xattrs = [(bytes(n), fs.getxattr(ino, bytes(n))) for n in sorted(bytes(n) for n in fs.listxattr(ino))]
    common = dict(mode=a.mode, uid=a.uid, gid=a.gid, mtime_ns=a.mtime_ns, xattrs=xattrs)
    fmt = stat.S_IFMT(a.mode)
    if fmt == stat.S_IFDIR:
        tw.add(path + b"/" if path else b"./", DIRTYPE, **common)
    elif fmt == stat.S_IFREG:
        tw.add(path, REGTYPE, size=a.size, data=_file_data(fs, ino, a.size), **common)
    elif fmt == stat.S_IFLNK:
        tw.add(path, SYMTYPE, linkname=fs.readlink(ino), **common)
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        tw.add(path, CHRTYPE if fmt == stat.S_IFCHR else BLKTYPE, major=os.major(a.rdev),
               minor=os.minor(a.rdev), **common)
    elif fmt == stat.S_IFIFO:
        tw.add(path, FIFOTYPE, **common)
    # sockets have no tar form (docker and umoci drop them too)


def _file_data(fs, ino, size):
    for off in range(0, size, READ_CHUNK):
        yield fs.read(ino, off, min(READ_CHUNK, size - off))


def replay(blob, fs, write):
    """Write an imported layer's tar again from its recipe, file data read from the tree;
    recipe.Mismatch when the tree no longer holds a file the recipe names."""
    for tag, val in recipe.records(blob):
        if tag == C.RECIPE_RAW:
            write(val)
        elif tag == C.RECIPE_ZEROS:
            write(bytes(val))
        else:
            path, size = val
            try:
                ino = fs_lookup(fs, path)
            except FsError:
                raise recipe.Mismatch(f"{path!r}: not in the tree") from None
            a = fs.getattr(ino)
            if not stat.S_ISREG(a.mode) or a.size != size:
                raise recipe.Mismatch(f"{path!r}: not the file the layer wrote")
            for piece in _file_data(fs, ino, size):
                write(piece)


# ---- blobs ----------------------------------------------------------------------------------------
class BlobSink:
    """Tar bytes in; sha256 of them (the diff_id), and of the gzip stream written to `f`
    (the blob digest).  Compression runs on a second thread (ISA-L drops the GIL) while
    this one reads the tree."""

    def __init__(self, f, compress):
        self.f = f
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0
        # wbits 31: a gzip header with no name and mtime 0
        self.z = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 31) if compress else None
        self.buf = bytearray()
        self.pool = ThreadPoolExecutor(1) if compress else None
        self.pending = deque()

    def write(self, data):
        self.buf += data
        if len(self.buf) >= BUFFER:
            self._hand_over()

    def _hand_over(self):
        data = bytes(self.buf)
        self.buf.clear()
        self.diff.update(data)
        if self.pool is None:
            self._out(data)
            return
        self.pending.append(self.pool.submit(self._compress, data))
        while len(self.pending) > 2:
            self.pending.popleft().result()

    def _compress(self, data):
        self._out(self.z.compress(data))

    def _out(self, data):
        if data:
            self.blob.update(data)
            self.f.write(data)
            self.size += len(data)

    def finish(self):
        """-> (diff_id, digest, size)."""
        try:
            self._hand_over()
            while self.pending:
                self.pending.popleft().result()
            if self.z is not None:
                self._out(self.z.flush())
        finally:
            if self.pool is not None:
                self.pool.shutdown()
        return "sha256:" + self.diff.hexdigest(), "sha256:" + self.blob.hexdigest(), self.size


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Layout:
    """An OCI image layout being written into directory `root`."""

    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs)
        with open(os.path.join(root, "oci-layout"), "wb") as f:
            f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))

    def _place(self, tmp, digest):
        path = os.path.join(self.blobs, digest.split(":", 1)[1])
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    def add_bytes(self, mediatype, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        tmp = os.path.join(self.blobs, ".new")
        with open(tmp, "wb") as f:
            f.write(data)
        self._place(tmp, digest)
        return {"mediaType": mediatype, "digest": digest, "size": len(data)}

    def add_layer(self, fs, changes, compress):
        """-> (descriptor, diff_id)"""
        def fill(sink):
            tw = TarWriter(sink)
            write_changes(tw, fs, changes)
            tw.close()
        return self._write_layer(fill, compress)

    def add_recipe_layer(self, fs, blob, want, compress):
        """The layer as it was imported, from its recipe: (descriptor, diff_id), or None
        when the tree no longer gives back the tar whose diff_id is `want`."""
        try:
            return self._write_layer(lambda sink: replay(blob, fs, sink.write), compress, want)
        except recipe.Mismatch:
            return None

    def _write_layer(self, fill, compress, want=None):
        """A layer blob whose tar bytes fill(sink) writes: (descriptor, diff_id), or None
        (nothing placed) when its diff_id is not `want`."""
        tmp = os.path.join(self.blobs, ".new")
        with open(tmp, "wb") as f:
            sink = BlobSink(f, compress)
            try:
                fill(sink)
            finally:
                diff_id, digest, size = sink.finish()
        if want is not None and diff_id != want:
            return None
        self._place(tmp, digest)
        return {"mediaType": MT_LAYER_GZIP if compress else MT_LAYER_TAR, "digest": digest, "size": size}, diff_id

    def write_index(self, manifest, tag):
        desc = dict(manifest, annotations={REF_NAME: tag})
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(canonical_json({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [desc]}))


def rfc3339(ns):
    sec, frac = divmod(ns, 10 ** 9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + (".%09dZ" % frac if frac else "Z")


def image_config(engine, chain, diff_ids, arch, empty=()):
    """The image's OCI config bytes: the one it was imported with (its runtime part: env,
    cmd, entrypoint, user, working dir, labels, and its history when it still matches the
    layers), else a minimal valid one; rootfs.diff_ids are always the layers written.  When
    that is the stored config itself (the layers are the ones it came with), its own bytes:
    the image keeps its config digest (its image ID)."""
    history = []
    for name in chain:
        e = engine.snapshot(name)
        h = {"created": rfc3339(e["created_ns"]),
             "created_by": "ctrfs commit " + name.decode("utf-8", "backslashreplace")}
        if name in empty:
            h["empty_layer"] = True
        history.append(h)
    config = {"architecture": arch, "os": "linux", "config": {},
              "created": history[-1]["created"] if history else rfc3339(0), "history": history}
    stored = imagemeta.read_config(FileSystem(engine, chain[-1], writable=False).tree)
    old = None
    if stored is not None:
        try:
            old = json.loads(stored)
        except ValueError:
            old = None
        if isinstance(old, dict):
            kept = {k: v for k, v in old.items() if k not in ("rootfs", "history")}
            old_history = old.get("history")
            if isinstance(old_history, list) and \
                    sum(1 for h in old_history if not h.get("empty_layer")) == len(diff_ids):
                kept["history"] = old_history
            config = {**config, **kept}
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    return stored if config == old else canonical_json(config)


# Blobs an import kept the descriptor of that a push may offer as they are: the OCI media
# type they go under, and whether they are the compressed kind.
REUSABLE = {MT_LAYER_GZIP: (MT_LAYER_GZIP, True),
            "application/vnd.docker.image.rootfs.diff.tar.gzip": (MT_LAYER_GZIP, True),
            MT_LAYER_TAR: (MT_LAYER_TAR, False),
            "application/vnd.docker.image.rootfs.diff.tar": (MT_LAYER_TAR, False)}


def export_oci(engine, name, root, tag, *, compress=True, arch=None, progress=None, reuse=None):
    """Write image `name` as an OCI image layout into the empty directory `root`.  A
    snapshot that changes nothing but image metadata (the config an import keeps on the
    image over its top layer) is no layer: an empty_layer history entry.  reuse(descriptor)
    -> True when the destination already holds that blob (a push asks its registry): an
    imported layer whose source blob it holds goes in the manifest as that blob, unwritten."""
    chain = image_chain(engine, name)
    layout = Layout(root)
    layers, diff_ids, empty = [], [], set()
    parent = None
    for snap in chain:
        fs = FileSystem(engine, snap, writable=False)
        ids = _imported(engine, fs, snap, parent)
        got = _reused(fs, ids, compress, reuse) if ids and reuse else None
        if got is None and ids:
            blob = imagemeta.read_recipe(fs.tree)
            got = layout.add_recipe_layer(fs, blob, ids[0], compress) if blob is not None else None
        if got is None:
            changes = list(tree_changes(engine, parent, snap))
            if parent is not None and not changes:
                empty.add(snap)
                parent = snap
                continue
            got = layout.add_layer(fs, changes, compress)
        desc, diff_id = got
        layers.append(desc)
        diff_ids.append(diff_id)
        if progress:
            progress(snap, desc)
        parent = snap
    config = layout.add_bytes(MT_CONFIG, image_config(engine, chain, diff_ids, arch or host_arch(), empty))
    manifest = layout.add_bytes(MT_MANIFEST, canonical_json(
        {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": config, "layers": layers}))
    layout.write_index(manifest, tag)
    return manifest, len(layers)


def _imported(engine, fs, snap, parent):
    """(diff_id, chain_id) of an imported layer over the parent it was imported on, or None."""
    e = engine.snapshot(snap)
    if not snap.startswith(LAYER_PREFIX) or (e["parent_name"] or None) != parent:
        return None
    ids = imagemeta.read_layer(fs.tree)
    if ids is None or snap != LAYER_PREFIX + ids[1].encode():
        return None
    return ids


def _reused(fs, ids, compress, reuse):
    """(descriptor, diff_id) of the blob the layer was imported from, when it is of the
    compression asked for and reuse() says the destination holds it; else None.  The layer
    tree is immutable and was made from exactly that blob (its sha256 checked on the way
    in), so the blob is the layer whatever the recipe would replay."""
    src = imagemeta.read_source(fs.tree)
    kind = REUSABLE.get(src["mediaType"]) if src else None
    if kind is None or kind[1] != compress:
        return None
    desc = {"mediaType": kind[0], "digest": src["digest"], "size": src["size"]}
    return (desc, ids[0]) if reuse(desc) else None


def export_tar(engine, name, f, *, compress=False):
    """The whole tree of `name` as one tar (a rootfs) written to binary file f."""
    if engine.snapshot(name) is None:
        raise UsageError(f"no image or tree named {name.decode(errors='replace')!r}")
    sink = BlobSink(f, compress)
    tw = TarWriter(sink)
    write_changes(tw, FileSystem(engine, name, writable=False), tree_changes(engine, None, name))
    tw.close()
    return sink.finish()


# ---- destinations: all or nothing ------------------------------------------------------------------
def check_new(dest):
    """DEST may be missing or an empty directory (or an empty file, for a tar)."""
    if not os.path.lexists(dest):
        return
    st = os.lstat(dest)
    if stat.S_ISDIR(st.st_mode):
        if os.listdir(dest):
            raise CtrfsError(f"{dest}: exists and is not empty")
    elif not stat.S_ISREG(st.st_mode) or st.st_size:
        raise CtrfsError(f"{dest}: exists and is not empty")


@contextlib.contextmanager
def new_directory(dest):
    """A temporary directory beside DEST, renamed to DEST when the body succeeds (rename
    replaces an empty directory) and removed when it fails: nothing half-done appears."""
    check_new(dest)
    parent = os.path.dirname(os.path.abspath(dest))
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(os.path.abspath(dest)) + ".ctrfs-", dir=parent)
    try:
        yield tmp
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def new_file(dest):
    check_new(dest)
    parent = os.path.dirname(os.path.abspath(dest))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(dest) + ".ctrfs-", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
