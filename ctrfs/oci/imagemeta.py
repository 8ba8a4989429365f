"""An image's OCI metadata in its FS tree (format/image.py): the config JSON, verbatim,
and the layer the tree ends with.  Export reads them back from here."""
import hashlib

from ..format import constants as C
from ..format.image import CONFIG_HI, CONFIG_LO, LAYER_KEY, config_key, pack_layer, unpack_layer


def _raw(digest):
    """'sha256:<hex>' -> 32 bytes."""
    return bytes.fromhex(digest.split(":", 1)[1])


def write_config(tree, raw):
    for key in [k for k, _v in tree.scan(CONFIG_LO, CONFIG_HI)]:
        tree.delete(key)
    step = C.IMAGE_CONFIG_PIECE
    for i in range(0, len(raw), step):
        tree.put(config_key(i // step), bytes(raw[i:i + step]))


def read_config(tree):
    """The config JSON bytes (its sha256 is the image's config digest), or None."""
    parts = [bytes(v) for _k, v in tree.scan(CONFIG_LO, CONFIG_HI)]
    return b"".join(parts) if parts else None


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
