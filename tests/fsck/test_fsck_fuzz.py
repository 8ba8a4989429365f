"""Totality: whatever bytes of the metadata are damaged, and however, fsck never raises,
-n exits 0 or 4 (0 only when the damage changed nothing that counts), -y exits 0 or 1,
and the run after the repair is clean.  (hypothesis: the `ci` profile keeps the count
moderate; HYPOTHESIS_PROFILE=deep for a soak run.)"""
import functools

from hypothesis import given
from hypothesis import strategies as st

from ctrfs.testing import corrupt as K

from fsckrun import fsck

BS = 4096


@functools.lru_cache(maxsize=1)
def sample():
    img = K.sample_image(seed=3)
    blocks = sorted(K.live_blocks(img) | {0, 1, 2, len(img) // BS - 1}
                    | {off // BS for off, _n in K.summary_offsets(img)})
    return bytes(img), blocks


damage = st.tuples(st.integers(0, 10 ** 6), st.integers(0, BS - 1), st.sampled_from([1, 8, 100, BS]),
                   st.sampled_from(K.HOWS), st.integers(0, 1000))


def apply(img, blocks, hits):
    for pick, start, length, how, seed in hits:
        block = blocks[pick % len(blocks)]
        start = min(start, BS - length)
        K.damage(img, block * BS + start, length, how, seed)


@given(st.lists(damage, min_size=1, max_size=4), st.booleans())
def test_any_metadata_damage_is_found_or_harmless_and_repaired(hits, verify_data):
    base, blocks = sample()
    img = bytearray(base)
    apply(img, blocks, hits)
    found = fsck(img, "n", verify_data)
    assert found.exit_code in (0, 4), found
    fixed = fsck(img, "y", verify_data)
    assert fixed.exit_code in (0, 1), (fixed, fixed.remaining)
    assert (fixed.exit_code == 0) == (found.exit_code == 0)
    again = fsck(img, "n", verify_data)
    assert again.exit_code == 0, again.problems


@given(st.lists(damage, min_size=1, max_size=3))
def test_p_then_y_converge(hits):
    base, blocks = sample()
    img = bytearray(base)
    apply(img, blocks, hits)
    safe = fsck(img, "p")
    assert safe.exit_code in (0, 1, 4, 5), safe
    assert fsck(img, "y").exit_code in (0, 1)
    assert fsck(img, "n").exit_code == 0
