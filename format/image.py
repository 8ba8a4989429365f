"""OCI image metadata kept inside an FS tree (items of type ITEM_IMAGE under inode 0), so
an image's config travels with its tree and is covered by its root hash.

    (0, ITEM_IMAGE, 'C' + piece u32 BE) -> IMAGE_CONFIG_PIECE bytes of the config JSON
    (0, ITEM_IMAGE, 'L')                -> ImageLayer (the layer the tree ends with)
    (0, ITEM_IMAGE, 'R' + piece u32 BE) -> IMAGE_RECIPE_PIECE bytes of the layer's recipe
    (0, ITEM_IMAGE, 'S')                -> LayerSource (the blob the layer was imported from)

The recipe (tar-split's idea) gives back the layer's uncompressed tar byte for byte: the
zstd frame of RECIPE_MAGIC, RECIPE_VERSION, then records up to a RECIPE_END record.  A
RecipeRaw is archive bytes kept verbatim (headers, PAX records, padding); a RecipeFile is
`size` bytes of file data, read back from the regular file at `path` in this tree; a
RecipeZeros is `length` zero bytes (the end-of-archive blocks).

No other inode carries these items; the directory tree never names inode 0."""
from construct import Bytes, Const, GreedyBytes, Int8ul, Int16ul, Int32ul, Int64ul, Prefixed, Struct

from ..errors import CorruptError
from . import constants as C
from .items import fs_key
from .node import LEAF_ITEM_OVERHEAD, max_item

ImageLayer = Struct(
    "diff_id" / Bytes(32),           # sha256 of the uncompressed layer tar applied last
    "chain_id" / Bytes(32),          # OCI ChainID of the layer stack up to and with it
)
IMAGE_LAYER_SIZE = 64
assert ImageLayer.sizeof() == IMAGE_LAYER_SIZE

LayerSource = Struct(
    "digest" / Bytes(32),            # sha256 of the blob as its manifest named it (compressed or not)
    "size" / Int64ul,                # the blob's size in bytes
    "media_type" / Prefixed(Int8ul, GreedyBytes),   # its descriptor's mediaType, ASCII
)

RecipeHeader = Struct(
    "magic" / Const(C.RECIPE_MAGIC),
    "version" / Int8ul,              # RECIPE_VERSION
)
# Each record: a tag byte (RECIPE_END, RECIPE_RAW, RECIPE_FILE, RECIPE_ZEROS), then:
RecipeRaw = Struct(
    "data" / Prefixed(Int32ul, GreedyBytes),     # archive bytes, verbatim
)
RecipeFile = Struct(
    "path" / Prefixed(Int16ul, GreedyBytes),     # the file's tree path, components joined by '/'
    "size" / Int64ul,                            # bytes of its data that follow in the archive
)
RecipeZeros = Struct(
    "length" / Int64ul,                          # zero bytes (the end-of-archive blocks)
)



# The recorder writes a record per tar member; these give the same bytes as the Structs
# above (tests/format checks it) without construct's per-call cost.
def pack_recipe_raw(data) -> bytes:
    return bytes((C.RECIPE_RAW,)) + len(data).to_bytes(4, "little") + bytes(data)


def pack_recipe_file(path: bytes, size: int) -> bytes:
    return bytes((C.RECIPE_FILE,)) + len(path).to_bytes(2, "little") + path + size.to_bytes(8, "little")


def pack_recipe_zeros(length: int) -> bytes:
    return bytes((C.RECIPE_ZEROS,)) + length.to_bytes(8, "little")


LAYER_KEY = fs_key(0, C.ITEM_IMAGE, bytes((C.IMAGE_LAYER,)))
SOURCE_KEY = fs_key(0, C.ITEM_IMAGE, bytes((C.IMAGE_SOURCE,)))


def config_key(piece: int) -> bytes:
    return fs_key(0, C.ITEM_IMAGE, bytes((C.IMAGE_CONFIG,)) + piece.to_bytes(4, "big"))


CONFIG_LO, CONFIG_HI = config_key(0), fs_key(0, C.ITEM_IMAGE, bytes((C.IMAGE_CONFIG + 1,)))


def recipe_key(piece: int) -> bytes:
    return fs_key(0, C.ITEM_IMAGE, bytes((C.IMAGE_RECIPE,)) + piece.to_bytes(4, "big"))


RECIPE_LO, RECIPE_HI = recipe_key(0), fs_key(0, C.ITEM_IMAGE, bytes((C.IMAGE_RECIPE + 1,)))
# a whole piece, with its key, is a leaf item even at the smallest block size
assert len(recipe_key(0)) + max(C.IMAGE_CONFIG_PIECE, C.IMAGE_RECIPE_PIECE) + LEAF_ITEM_OVERHEAD \
    <= max_item(C.MIN_BLOCK_SIZE)


def pack_layer(diff_id: bytes, chain_id: bytes) -> bytes:
    return bytes(diff_id) + bytes(chain_id)


def unpack_layer(raw) -> tuple:
    if len(raw) != IMAGE_LAYER_SIZE:
        raise CorruptError(f"image layer item: {len(raw)} bytes, want {IMAGE_LAYER_SIZE}")
    return bytes(raw[:32]), bytes(raw[32:])


def pack_source(digest: bytes, size: int, media_type: str) -> bytes:
    return LayerSource.build({"digest": digest, "size": size, "media_type": media_type.encode("ascii")})


def unpack_source(raw) -> tuple:
    """-> (digest 32 bytes, size, media type str)."""
    try:
        v = LayerSource.parse(bytes(raw))
        mt = v.media_type.decode("ascii")
    except Exception as e:
        raise CorruptError(f"layer source item: {e}") from None
    if len(raw) != 32 + 8 + 1 + len(mt) or not mt:
        raise CorruptError(f"layer source item: {len(raw)} bytes for a {len(mt)}-byte media type")
    return bytes(v.digest), v.size, mt


def check_image_item(sub: bytes, val) -> None:
    """Raise CorruptError unless (0, ITEM_IMAGE, sub) -> val is well formed."""
    if sub == bytes((C.IMAGE_LAYER,)):
        unpack_layer(val)
    elif sub == bytes((C.IMAGE_SOURCE,)):
        unpack_source(val)
    elif len(sub) == 5 and sub[0] == C.IMAGE_CONFIG:
        if not 0 < len(val) <= C.IMAGE_CONFIG_PIECE:
            raise CorruptError(f"image config piece {int.from_bytes(sub[1:], 'big')}: {len(val)} bytes")
    elif len(sub) == 5 and sub[0] == C.IMAGE_RECIPE:
        if not 0 < len(val) <= C.IMAGE_RECIPE_PIECE:
            raise CorruptError(f"layer recipe piece {int.from_bytes(sub[1:], 'big')}: {len(val)} bytes")
    else:
        raise CorruptError(f"image item with unknown subkey {bytes(sub).hex()}")
