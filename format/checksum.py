"""CRC32C for metadata blocks and domain-separated blake3 content addresses."""
import blake3
import crcmod.predefined

from .constants import HASH_CONTEXT_CALOG, HASH_CONTEXT_DATA, HASH_CONTEXT_NODE

# Castagnoli, reflected, init 0xFFFFFFFF, final xor 0xFFFFFFFF (crcmod's "crc-32c").
crc32c = crcmod.predefined.mkPredefinedCrcFun("crc-32c")


def data_hash(block) -> bytes:
    """Content address of a data block (its exact bytes, zero padding included)."""
    return blake3.blake3(block, derive_key_context=HASH_CONTEXT_DATA).digest()


def node_hash(hash_input) -> bytes:
    """Content address of a tree node (see node.node_hash_input for the bytes)."""
    return blake3.blake3(hash_input, derive_key_context=HASH_CONTEXT_NODE).digest()


def calog_hash(block) -> bytes:
    """Address of a CA log block (its exact bytes): the link from its successor."""
    return blake3.blake3(block, derive_key_context=HASH_CONTEXT_CALOG).digest()
