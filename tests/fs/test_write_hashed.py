"""The import's block path (pipeline.with_block_hashes, then FileSystem.write_hashed: blocks
hashed in the reader thread and stored at once) gives the tree that ordinary writes give:
the same files, and the same data blocks and holes, for pieces of every alignment,
sparse regions, files around the inline limit and all-zero blocks."""
import stat

from hypothesis import given
from hypothesis import strategies as st

from conftest import Mounted

from ctrfs.format import constants as C
from ctrfs.format.items import block_end, block_key
from ctrfs.oci.pipeline import with_block_hashes
from ctrfs.oci.tarlayer import FILE, Entry

BS = 4096



@st.composite
def files(draw):
    """[(size, [(offset, bytes)])]: regions in order, as a tar reader gives them."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        pos, pieces = 0, []
        for _ in range(draw(st.integers(0, 4))):
            pos += draw(st.sampled_from([0, 0, 1, BS - 1, BS, 3 * BS, 100]))
            n = draw(st.sampled_from([1, C.INLINE_MAX, C.INLINE_MAX + 1, BS - 1, BS, BS + 1, 3 * BS, 5 * BS - 3]))
            fill = draw(st.sampled_from(["zero", "byte", "mixed"]))
            if fill == "zero":
                data = bytes(n)
            elif fill == "byte":
                data = bytes([draw(st.integers(1, 255))]) * n
            else:
                data = (bytes(BS) + b"x" * BS) * (n // (2 * BS) + 1)
                data = data[:n]
            pieces.append((pos, data))
            pos += n
        size = pos + draw(st.sampled_from([0, 0, 5, BS]))
        out.append((size, pieces))
    return out


def store(fs, spec, hashed):
    inos = []
    for i, (size, pieces) in enumerate(spec):
        ino = fs.mknod(C.ROOT_INO, b"f%d" % i, stat.S_IFREG | 0o644).ino
        inos.append(ino)
        events = [Entry(FILE, (b"f%d" % i,), size=size), *pieces]
        if hashed:
            events = list(with_block_hashes(events, BS))
        for ev in events[1:]:
            if len(ev) == 3:
                assert fs.write_hashed(ino, *ev) == len(ev[1])
            else:
                assert fs.write(ino, ev[0], ev[1], stamp=False) == len(ev[1])
        if fs.getattr(ino).size < size:
            fs.setattr(ino, size=size)
    fs.flush()
    return inos


def picture(fs, inos):
    out = []
    for ino in inos:
        ind = fs.getattr(ino)
        # keys and content addresses (where each block landed in the log may differ)
        blocks = [(bytes(k), bytes(v[8:])) for k, v in fs.tree.scan(block_key(ino, 0), block_end(ino))]
        out.append((ind.size, ind.is_inline, bytes(fs.read(ino, 0, ind.size)), blocks))
    return out


@given(files())
def test_hashed_writes_store_what_plain_writes_store(spec):
    a, b = Mounted(), Mounted()
    want = picture(a.fs, store(a.fs, spec, hashed=False))
    got = picture(b.fs, store(b.fs, spec, hashed=True))
    assert got == want
    for m in (a, b):
        m.engine.close()


def test_whole_blocks_take_the_hashed_path():
    """What the import relies on for its speed: aligned pieces past the inline limit are
    hashed in the reader and stored without the dirty cache."""
    m = Mounted()
    data = b"y" * (3 * BS + 10)
    events = list(with_block_hashes([Entry(FILE, (b"f",), size=len(data)), (0, data)], BS))
    assert len(events[1]) == 3 and len(events[1][2]) == 4
    ino = m.fs.mknod(C.ROOT_INO, b"f", stat.S_IFREG | 0o644).ino
    m.fs.write_hashed(ino, *events[1])
    assert not m.fs.data.dirty
    assert bytes(m.fs.read(ino, 0, len(data))) == data
    m.engine.close()
