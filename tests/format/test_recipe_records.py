"""Layer recipe records: the fast encoders the recorder uses give the bytes of the construct
definitions, and the reader (recipe.records) gives back what was written."""
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.format import constants as C
from ctrfs.format.image import (RecipeFile, RecipeHeader, RecipeRaw, RecipeZeros, pack_recipe_file,
                                pack_recipe_raw, pack_recipe_zeros)
from ctrfs.oci.recipe import records

import zstandard

paths = st.binary(min_size=1, max_size=300)
sizes = st.integers(0, (1 << 64) - 1)


@given(st.binary(max_size=5000))
def test_raw(data):
    assert pack_recipe_raw(data) == bytes((C.RECIPE_RAW,)) + RecipeRaw.build({"data": data})


@given(paths, sizes)
def test_file(path, size):
    assert pack_recipe_file(path, size) == bytes((C.RECIPE_FILE,)) + RecipeFile.build({"path": path, "size": size})


@given(sizes)
def test_zeros(length):
    assert pack_recipe_zeros(length) == bytes((C.RECIPE_ZEROS,)) + RecipeZeros.build({"length": length})


record = st.one_of(st.tuples(st.just(C.RECIPE_RAW), st.binary(max_size=2000)),
                   st.tuples(st.just(C.RECIPE_FILE), st.tuples(paths, sizes)),
                   st.tuples(st.just(C.RECIPE_ZEROS), sizes))


@given(st.lists(record, max_size=30))
def test_records_read_back(recs):
    body = bytearray(RecipeHeader.build({"version": C.RECIPE_VERSION}))
    for tag, val in recs:
        body += {C.RECIPE_RAW: lambda: pack_recipe_raw(val),
                 C.RECIPE_FILE: lambda: pack_recipe_file(*val),
                 C.RECIPE_ZEROS: lambda: pack_recipe_zeros(val)}[tag]()
    body.append(C.RECIPE_END)
    got = [(t, bytes(v) if t == C.RECIPE_RAW else v)
           for t, v in records(zstandard.ZstdCompressor().compress(bytes(body)))]
    assert got == recs
