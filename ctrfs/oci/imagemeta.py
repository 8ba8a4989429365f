"""An image's OCI metadata in its FS tree (format/image.py): the config JSON, verbatim,
the layer the tree ends with, and the descriptor of the blob that layer came in.  Export
reads them back from here."""
import hashlib

from ..format import constants as C
from ..format.image import (CONFIG_HI, CONFIG_LO, LAYER_KEY, RECIPE_HI, RECIPE_LO, SOURCE_KEY, config_key,
                            pack_layer, pack_source, recipe_key, unpack_layer, unpack_source)


def _raw(digest):
    """'sha256:<hex>' -> 32 bytes."""
    return bytes.fromhex(digest.split(":", 1)[1])


def _write_pieces(tree, lo, hi, key, step, raw):
    """Replace the items in [lo, hi) by raw cut in pieces of `step` bytes (None: none)."""
    for k in [k for k, _v in tree.scan(lo, hi)]:
        tree.delete(k)
    for i in range(0, len(raw or b""), step):
        tree.put(key(i // step), bytes(raw[i:i + step]))


def _read_pieces(tree, lo, hi):
    parts = [bytes(v) for _k, v in tree.scan(lo, hi)]
    return b"".join(parts) if parts else None


def write_config(tree, raw):
    _write_pieces(tree, CONFIG_LO, CONFIG_HI, config_key, C.IMAGE_CONFIG_PIECE, raw)


def read_config(tree):
    """The config JSON bytes (its sha256 is the image's config digest), or None."""
    return _read_pieces(tree, CONFIG_LO, CONFIG_HI)


def write_recipe(tree, blob):
    """The layer's tar recipe (ctrfs/oci/recipe.py), or None to drop a lower layer's."""
    _write_pieces(tree, RECIPE_LO, RECIPE_HI, recipe_key, C.IMAGE_RECIPE_PIECE, blob)


def read_recipe(tree):
    return _read_pieces(tree, RECIPE_LO, RECIPE_HI)


def config_digest(tree):
    raw = read_config(tree)
    return None if raw is None else "sha256:" + hashlib.sha256(raw).hexdigest()


def write_layer(tree, diff_id, chain_id):
    tree.put(LAYER_KEY, pack_layer(_raw(diff_id), _raw(chain_id)))


def read_layer(tree):
    """(diff_id, chain_id) as 'sha256:<hex>' strings of the layer the tree ends with, or None."""
    raw = tree.get(LAYER_KEY)
    if raw is None:
        return None
    diff, chain = unpack_layer(raw)
    return "sha256:" + diff.hex(), "sha256:" + chain.hex()


def write_source(tree, desc):
    """The descriptor ({"mediaType", "digest", "size"}) of the blob the layer was imported
    from, or None to drop a lower layer's."""
    if desc is None:
        if tree.get(SOURCE_KEY) is not None:
            tree.delete(SOURCE_KEY)
        return
    tree.put(SOURCE_KEY, pack_source(_raw(desc["digest"]), desc["size"], desc["mediaType"]))


def read_source(tree):
    """That descriptor, or None."""
    raw = tree.get(SOURCE_KEY)
    if raw is None:
        return None
    digest, size, mt = unpack_source(raw)
    return {"mediaType": mt, "digest": "sha256:" + digest.hex(), "size": size}
