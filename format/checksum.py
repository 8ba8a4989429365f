"""CRC32C for metadata blocks and domain-separated blake3 content addresses."""
import blake3
import crcmod.predefined

from ..errors import CorruptError
from .constants import HASH_CONTEXT_CALOG, HASH_CONTEXT_DATA, HASH_CONTEXT_NODE

# Castagnoli, reflected, init 0xFFFFFFFF, final xor 0xFFFFFFFF (crcmod's "crc-32c").
crc32c = crcmod.predefined.mkPredefinedCrcFun("crc-32c")


def check_crc(raw, end, crc_offset, stored, what):
    """Verify the CRC32C of raw[:end] taken with its own 4-byte CRC field (at crc_offset)
    as zeros; a mismatch is CorruptError naming the structure."""
    check = bytearray(raw[:end])
    check[crc_offset:crc_offset + 4] = bytes(4)
    got = crc32c(bytes(check))
    if got != stored:
        raise CorruptError(f"{what} CRC mismatch: stored {stored:#010x}, computed {got:#010x}")


def data_hash(block) -> bytes:
    """Content address of a data block (its exact bytes, zero padding included)."""
    return blake3.blake3(block, derive_key_context=HASH_CONTEXT_DATA).digest()


def node_hash(hash_input) -> bytes:
    """Content address of a tree node (see node.node_hash_input for the bytes)."""
    return blake3.blake3(hash_input, derive_key_context=HASH_CONTEXT_NODE).digest()


def calog_hash(block) -> bytes:
    """Address of a CA log block (its exact bytes): the link from its successor."""
    return blake3.blake3(block, derive_key_context=HASH_CONTEXT_CALOG).digest()
