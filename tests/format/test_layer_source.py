"""The LayerSource item (format/image.py): what pack_source writes, unpack_source and the
checker read back; anything else of that subkey is damage."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctrfs.errors import CorruptError
from ctrfs.format import constants as C
from ctrfs.format.image import LayerSource, check_image_item, pack_source, unpack_source

SUB = bytes((C.IMAGE_SOURCE,))
media = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=255)


@given(st.binary(min_size=32, max_size=32), st.integers(0, 2 ** 64 - 1), media)
def test_round_trip(digest, size, mt):
    raw = pack_source(digest, size, mt)
    assert raw == LayerSource.build({"digest": digest, "size": size, "media_type": mt.encode()})
    assert len(raw) == 32 + 8 + 1 + len(mt)
    assert unpack_source(raw) == (digest, size, mt)
    check_image_item(SUB, raw)


@given(st.binary(min_size=32, max_size=32), st.integers(0, 2 ** 64 - 1), media, st.integers(1, 40))
def test_cut_or_padded_is_damage(digest, size, mt, k):
    raw = pack_source(digest, size, mt)
    for bad in (raw[:-k], raw + b"x" * k):
        with pytest.raises(CorruptError):
            check_image_item(SUB, bad)


def test_empty_or_non_ascii_media_type_is_damage():
    for mt in (b"", "tär".encode()):
        raw = bytes(32) + bytes(8) + bytes((len(mt),)) + mt
        with pytest.raises(CorruptError):
            unpack_source(raw)
