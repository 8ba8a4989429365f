"""Import images into an open engine, in process (FileSystem on the engine, no FUSE).

Each layer becomes an immutable snapshot `@layer/<ChainID>` over its parent's, so a layer
stack shared by images is stored once and a stack already on the device is not read
again; the image NAME:TAG is the top layer's tree plus its OCI config (imagemeta).  The
layers are applied to one scratch writable tree (`@import/`), whose root is flushed and
held by a snapshot entry after each layer.  Nothing is committed before every image is
in: on failure the caller closes the engine without a commit (import_into does)."""
import hashlib
import os

from .. import catalogue
from ..errors import BadImageError, CtrfsError, DeviceError
from ..filesystem import FileSystem, init_tree
from ..format import constants as C
from ..format.pointer import NULL_POINTER
from . import imagemeta
from .apply import LayerApplier
from .pipeline import threaded, with_block_hashes
from .recipe import Recorder
from .streams import LayerStream
from .tarlayer import read_layer

LAYER_PREFIX = catalogue.LAYER_PREFIX
SCRATCH_PREFIX = b"@import/"


def chain_ids(diff_ids):
    """OCI ChainIDs: ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out = []
    for d in diff_ids:
        out.append(next_chain(out[-1], d) if out else d)
    return out


def next_chain(chain_id, diff_id):
    return "sha256:" + hashlib.sha256(f"{chain_id} {diff_id}".encode()).hexdigest()


def layer_name(chain_id):
    return LAYER_PREFIX + chain_id.encode()


class Importer:
    def __init__(self, engine, *, threads=True, progress=None, on_layer=None):
        if not engine.sb["ro_compat"] & C.RO_COMPAT_IMAGE_META:
            raise DeviceError("the device was made without image metadata support "
                              "(an older mkfs.ctrfs): it cannot hold imported images")
        self.engine = engine
        self.threads = threads
        self.progress = progress
        # a daemon's engine (tool.Borrowed): its requests run at each pause, and while the
        # import waits for its reader thread
        self.pause, self.idle = getattr(engine, "pause", None), getattr(engine, "idle", None)
        # on_layer(layer snapshot name): after each new layer is held, while no scratch
        # tree exists (a pull commits there, so a failure later keeps the layer)
        self.on_layer = on_layer
        self.scratch = SCRATCH_PREFIX + str(os.getpid()).encode()
        self.new_layers = 0
        self.recipe = None         # of the layer applied last
        for name, _e in engine.snapshots():       # left by an import that died
            if name.startswith(SCRATCH_PREFIX):
                engine.delete(name)

    def import_image(self, image, name):
        """Store image (layout.Image) as `name`; returns (root hash, layers, new layers)."""
        engine = self.engine
        if engine.snapshot(name) is not None:
            raise CtrfsError(f"an image named {name.decode(errors='replace')!r} exists")
        ids = [layer.diff_id for layer in image.layers]
        known = chain_ids(ids) if all(ids) else []
        have = 0
        while have < len(known) and engine.snapshot(layer_name(known[have])) is not None:
            have += 1
        parent = layer_name(known[have - 1]) if have else b""
        chain = known[have - 1] if have else None
        fs = self._scratch(parent)
        try:
            for i in range(have, len(image.layers)):
                layer = image.layers[i]
                diff_id = self._apply(fs, layer, i, len(image.layers))
                chain = diff_id if chain is None else next_chain(chain, diff_id)
                lname = layer_name(chain)
                if engine.snapshot(lname) is None:
                    imagemeta.write_layer(fs.tree, diff_id, chain)
                    imagemeta.write_recipe(fs.tree, self.recipe)
                    if engine.sb["ro_compat"] & C.RO_COMPAT_LAYER_SOURCE:
                        imagemeta.write_source(fs.tree, layer.source)
                    root = self._flush(fs)
                    self._hold(lname, root, parent, fs)
                    self.new_layers += 1
                    if self.on_layer:           # the scratch tree is never part of that commit
                        fs = self._rescratch(fs, lname, self.on_layer)
                else:                                # a tar layer already there: keep that one
                    fs = self._rescratch(fs, lname)
                parent = lname
            if image.config is not None:
                imagemeta.write_config(fs.tree, image.config)
                root = self._flush(fs)
                self._hold(name, root, parent, fs)
            else:
                e = engine.snapshot(parent)
                self._hold(name, e["root"], parent, fs)
            return engine.snapshot(name)["root"][1], len(image.layers), len(image.layers) - have
        finally:
            self._drop_scratch()

    def import_events(self, events, name, what, config=None):
        """Store a whole tree given as entry events (tarlayer's Entry and (offset, bytes)
        pieces, from a source other than a tar) as image `name` with no parent; returns
        its root hash."""
        if self.engine.snapshot(name) is not None:
            raise CtrfsError(f"an image named {name.decode(errors='replace')!r} exists")
        fs = self._scratch(b"")
        try:
            LayerApplier(fs, what).apply(events, self.progress.bytes if self.progress else None, self.pause)
            if config is not None:
                imagemeta.write_config(fs.tree, config)
            self._hold(name, self._flush(fs), b"", fs)
            return self.engine.snapshot(name)["root"][1]
        finally:
            self._drop_scratch()

    # ---- steps -----------------------------------------------------------------------------
    def _scratch(self, parent):
        engine = self.engine
        root = engine.snapshot(parent)["root"] if parent else None
        engine.create_tree(self.scratch, root, C.SNAP_WRITABLE)
        fs = FileSystem(engine, self.scratch)
        if root is None:
            init_tree(fs.tree)
            fs.setattr(C.ROOT_INO, atime_ns=0, mtime_ns=0, ctime_ns=0)   # no import-time clock
        return fs

    def _rescratch(self, fs, lname, between=None):
        self._drop_scratch()
        if between:
            between(lname)
        return self._scratch(lname)

    def _drop_scratch(self):
        if self.engine.snapshot(self.scratch) is not None:
            self.engine.delete(self.scratch)

    def _apply(self, fs, layer, i, n):
        if self.progress:
            self.progress.layer(i + 1, n, layer.what)
        raw = layer.open()
        stream = LayerStream(raw, layer.what)
        recorder = Recorder(stream)
        events = with_block_hashes(_with_finish(read_layer(stream, layer.what, recorder), stream, recorder),
                                   self.engine.block_size)
        if self.threads:
            events = threaded(events, idle=self.idle)
        applier = LayerApplier(fs, layer.what)
        applier.apply(events, self.progress.bytes if self.progress else None, self.pause)
        diff_id, self.recipe = stream.diff_id, stream.recipe
        if layer.diff_id is not None and diff_id != layer.diff_id:
            raise BadImageError(f"{layer.what}: diff_id mismatch (the uncompressed tar is {diff_id[:19]}..., "
                                f"the config says {layer.diff_id[:19]}...)")
        return diff_id

    def _flush(self, fs):
        fs.flush()
        return fs.tree.flush(self.engine.seq + 1) or NULL_POINTER

    def _hold(self, name, root, parent, fs):
        pe = self.engine.snapshot(parent) if parent else None
        size, count = fs.totals() if fs.tree.root is not None else (0, 0)
        self.engine.create_tree(name, root, C.SNAP_IMAGE, parent_name=parent,
                                parent_root=pe["root"][1] if pe else None,
                                logical_bytes=size, inodes=count)


def _with_finish(events, stream, recorder):
    """The events, then the stream read to its end: the digests and the layer's recipe are
    known once the last event is out (in the producer thread, so the consumer never waits
    for hashing)."""
    yield from events
    stream.diff_id = stream.finish()
    stream.recipe = recorder.finish()

