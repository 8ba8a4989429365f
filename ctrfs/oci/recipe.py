"""Layer recipes: what it takes to give an imported layer's tar back byte for byte, so an
exported layer that was not changed has the diff_id it came in with (containers/storage
keeps tar-split files for the same reason: a registry that holds the layer already then
takes nothing new).

The recipe (format/image.py) keeps the archive's own bytes between file contents
verbatim (headers, PAX records, padding) and, for each regular file's data, only its path
and size: the data is read back from the layer's tree.  The recorder gives up (no recipe;
export then writes the layer from the tree diff, as for a committed tree) on what it
cannot keep cheaply: GNU sparse members, or a run of archive bytes longer than the window
the stream keeps behind its read position.  Export replays it (ctrfs/oci/export.py) and
checks the result against the stored diff_id, so a tree that no longer matches (a later
member replaced a file of the same layer) falls back the same way."""
import io

import zstandard

from ..errors import BadImageError
from ..format import constants as C
from ..format.image import RecipeHeader, pack_recipe_file, pack_recipe_raw, pack_recipe_zeros

ZSTD_LEVEL = 3
BATCH = 1 << 20                       # records gathered before a zstd call


class Mismatch(Exception):
    """The tree does not hold what the recipe needs."""


class Recorder:
    """Fed by tarlayer.read_layer with each member as it is read; finish() after the
    stream was read to its end gives the recipe (bytes) or None."""

    def __init__(self, stream):
        self.stream = stream
        self.end = 0                  # stream offset up to which the recipe covers the archive
        self.spoilt = False
        self.z = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
        self.out = []
        self.buf = bytearray(RecipeHeader.build({"version": C.RECIPE_VERSION}))

    def _emit(self, record):
        self.buf += record
        if len(self.buf) >= BATCH:
            self.out.append(self.z.compress(self.buf))
            self.buf.clear()

    def _raw(self, upto):
        n = upto - self.end
        if n < 0 or upto > self.stream.pos:
            self.spoilt = True
            return
        if n:
            try:
                data = self.stream.bytes_at(self.end, n)
            except BadImageError:         # fell out of the stream's window
                self.spoilt = True
                return
            self._emit(pack_recipe_raw(data))
        self.end = upto

    def member(self, m, path):
        """TarInfo m was read; path: the tree path of the regular file whose data follows it
        (None: the member's data, if any, is kept verbatim with the next bytes)."""
        if self.spoilt:
            return
        if m.sparse:
            self.spoilt = True
            return
        self._raw(m.offset_data)
        if path is not None and m.size and not self.spoilt:
            self._emit(pack_recipe_file(b"/".join(path), m.size))
            self.end = m.offset_data + m.size

    def finish(self):
        if self.spoilt:
            return None
        n = self.stream.pos - self.end
        if n:
            try:
                tail = self.stream.bytes_at(self.end, n)
            except BadImageError:
                return None
            if tail.count(0) == len(tail):
                self._emit(pack_recipe_zeros(n))
            else:
                self._emit(pack_recipe_raw(tail))
        self._emit(bytes((C.RECIPE_END,)))
        self.out.append(self.z.compress(self.buf))
        self.out.append(self.z.flush())
        return b"".join(self.out)


def records(blob):
    """(tag, value) of a recipe: RAW -> bytes, FILE -> (path, size), ZEROS -> length."""
    try:
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
    except zstandard.ZstdError as exc:
        raise Mismatch(f"recipe: {exc}") from None
    head = RecipeHeader.sizeof()
    if len(raw) < head or raw[:4] != C.RECIPE_MAGIC or raw[4] != C.RECIPE_VERSION:
        raise Mismatch("not a recipe of this version")
    mv, pos = memoryview(raw), head
    while True:
        if pos >= len(mv):
            raise Mismatch("recipe without an end record")
        tag = mv[pos]
        pos += 1
        if tag == C.RECIPE_END:
            return
        if tag == C.RECIPE_RAW:
            n = int.from_bytes(mv[pos:pos + 4], "little")
            yield tag, mv[pos + 4:pos + 4 + n]
            pos += 4 + n
        elif tag == C.RECIPE_FILE:
            n = int.from_bytes(mv[pos:pos + 2], "little")
            path = bytes(mv[pos + 2:pos + 2 + n])
            yield tag, (path, int.from_bytes(mv[pos + 2 + n:pos + 10 + n], "little"))
            pos += 10 + n
        elif tag == C.RECIPE_ZEROS:
            yield tag, int.from_bytes(mv[pos:pos + 8], "little")
            pos += 8
        else:
            raise Mismatch(f"recipe record tag {tag}")
