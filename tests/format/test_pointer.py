"""Block pointers: the construct struct, the fast codec and the numpy dtype agree."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.format.pointer import (NULL_HASH, NULL_POINTER, POINTER_DTYPE, POINTER_SIZE, Pointer, pack_pointer,
                                  unpack_pointer)
from formatcheck import check_struct, field_offset, from_struct


@given(from_struct(Pointer))
def test_round_trip_and_fast_codec(value):
    raw = check_struct(Pointer, value, POINTER_SIZE)
    assert pack_pointer(value["paddr"], value["hash"]) == raw
    assert unpack_pointer(raw) == (value["paddr"], value["hash"])


def test_dtype_matches_struct():
    assert POINTER_DTYPE.itemsize == POINTER_SIZE == 40
    for name in ("paddr", "hash"):
        assert POINTER_DTYPE.fields[name][1] == field_offset(Pointer, name)
        assert POINTER_DTYPE.fields[name][0].itemsize == dict((sc.name, sc.sizeof()) for sc in Pointer.subcons)[name]


@given(st.lists(from_struct(Pointer), max_size=20))
def test_dtype_reads_packed_pointer_arrays(values):
    raw = b"".join(Pointer.build(v) for v in values)
    arr = np.frombuffer(raw, dtype=POINTER_DTYPE)
    assert [int(p) for p in arr["paddr"]] == [v["paddr"] for v in values]
    # numpy's S32 drops trailing NULs on access; the raw bytes are still exact
    assert arr.tobytes() == raw


def test_null_pointer():
    assert NULL_POINTER == (0, NULL_HASH) and NULL_HASH == bytes(32)
    assert pack_pointer(*NULL_POINTER) == bytes(POINTER_SIZE)
