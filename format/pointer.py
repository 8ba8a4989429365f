"""Block pointer: where a block is, and the blake3 it must hash to (the Merkle link)."""
import numpy as np
from construct import Bytes, Int64ul, Struct

from . import constants as C

Pointer = Struct(
    "paddr" / Int64ul,               # block number on the device; 0 = none (empty tree)
    "hash" / Bytes(C.HASH_SIZE),     # blake3-256 content address of the target
)
POINTER_SIZE = 40
assert Pointer.sizeof() == POINTER_SIZE
# The same layout as a numpy dtype, for arrays of pointers (block maps).
POINTER_DTYPE = np.dtype([("paddr", "<u8"), ("hash", "S32")])
assert POINTER_DTYPE.itemsize == POINTER_SIZE

NULL_HASH = bytes(C.HASH_SIZE)
NULL_POINTER = (0, NULL_HASH)


def pack_pointer(paddr: int, digest: bytes) -> bytes:
    return paddr.to_bytes(8, "little") + digest


def unpack_pointer(raw) -> tuple:
    return int.from_bytes(raw[:8], "little"), bytes(raw[8:POINTER_SIZE])
