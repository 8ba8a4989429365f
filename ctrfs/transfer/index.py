"""The file-level transfer's index (spec/TRANSFER.md): an image's tree as metadata apart
from its content, and where each file's content lies in the object blobs.  JSON, zstd
compressed; decode_index() checks every field once, so the puller trusts what it returns.

    {"version": 2,
     "entries": [{"p": path, "k": kind, "m": permission bits, "u": uid, "g": gid,
                  "t": mtime ns, "r": rdev, "l": symlink target or hardlink target path,
                  "x": {xattr name: base64 value}, "c": content id (regular files)}, ...],
     "contents": {content id: {"size": n, "parts": [[blob, offset, frame, length, sha256], ...]}},
     "blobs": [[blob digest, blob size], ...]}

A content id is the sha256 of a file's bytes; a part (a whole small file in a pack, or a
piece of a large one) is one zstd frame of `frame` bytes at `offset` of blob number `blob`,
which decompresses to `length` bytes whose sha256 is given: a puller can fetch just the
frames it lacks (a Range read).  Paths are bytes, carried as JSON strings through
surrogateescape."""
import base64
import binascii
import json
import re

from ..errors import BadImageError
from ..oci import tarlayer as T

VERSION = 2
MT_CONFIG = "application/vnd.ctrfs.transfer.config.v1+json"
MT_INDEX = "application/vnd.ctrfs.transfer.index.v1+json+zstd"
MT_OBJECTS = "application/vnd.ctrfs.transfer.objects.v1+zstd"
SMALL_FILE = 256 << 10        # files up to this size are packed whole
PACK_SIZE = 8 << 20           # a pack blob is closed past this many (compressed) bytes
PIECE_SIZE = 4 << 20          # larger files travel in pieces of this size
BLOB_MAX = 16 << 20           # an object blob is never larger
INDEX_MAX = 256 << 20         # an index never decompresses to more
ZSTD_LEVEL = 6               # 5% smaller than 3 on the corpus, 2.4x the compress time (see TRANSFER.md)
KINDS = (T.FILE, T.DIR, T.SYMLINK, T.HARDLINK, T.CHAR, T.BLOCK, T.FIFO)
_SHA = re.compile(r"^sha256:[0-9a-f]{64}$")


def path_text(path):
    return path.decode("utf-8", "surrogateescape")


def path_bytes(text):
    return text.encode("utf-8", "surrogateescape")


def encode_index(entries, contents, blobs):
    import zstandard
    doc = {"version": VERSION, "entries": entries, "contents": contents, "blobs": blobs}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw)


def decompress(data, limit, what):
    import zstandard
    try:
        out = zstandard.ZstdDecompressor().stream_reader(data).read(limit + 1)
    except zstandard.ZstdError as exc:
        raise BadImageError(f"{what}: corrupt zstd data ({exc})") from None
    if len(out) > limit:
        raise BadImageError(f"{what}: decompresses to more than {limit} bytes")
    return out


def _need(cond, what, why):
    if not cond:
        raise BadImageError(f"{what}: {why}")


def _int(v, what, field):
    _need(type(v) is int and v >= 0, what, f"bad {field} {v!r}")
    return v


def decode_index(data, what="index"):
    """Compressed index bytes -> (entries as tarlayer.Entry + content id, contents, blobs)."""
    try:
        doc = json.loads(decompress(data, INDEX_MAX, what))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadImageError(f"{what}: not JSON ({exc})") from None
    _need(isinstance(doc, dict) and doc.get("version") == VERSION, what, f"not a version {VERSION} index")
    blobs = doc.get("blobs")
    _need(isinstance(blobs, list), what, "no blobs")
    for b in blobs:
        _need(isinstance(b, list) and len(b) == 2 and isinstance(b[0], str) and _SHA.match(b[0]), what, "bad blob")
        _need(_int(b[1], what, "blob size") <= BLOB_MAX, what, "a blob too large")
    contents = doc.get("contents")
    _need(isinstance(contents, dict), what, "no contents")
    for cid, c in contents.items():
        _need(_SHA.match(cid) and isinstance(c, dict) and isinstance(c.get("parts"), list), what, "bad content")
        total = 0
        for part in c["parts"]:
            _need(isinstance(part, list) and len(part) == 5, what, "bad part")
            bi, off, frame, n = (_int(x, what, "part") for x in part[:4])
            _need(bi < len(blobs) and off + frame <= blobs[bi][1], what, "a part outside its blob")
            _need(0 < n <= PIECE_SIZE, what, "a part of a bad length")
            _need(isinstance(part[4], str) and _SHA.match(part[4]), what, "bad part digest")
            total += n
        _need(total == _int(c.get("size"), what, "size"), what, f"content {cid[:19]}... parts do not add up")
    entries = [_entry(e, contents, what) for e in _list(doc.get("entries"), what)]
    return entries, contents, blobs


def _list(v, what):
    _need(isinstance(v, list), what, "no entries")
    return v


def _entry(e, contents, what):
    _need(isinstance(e, dict) and isinstance(e.get("p"), str) and e.get("k") in KINDS, what, "bad entry")
    path = T.clean_path(path_bytes(e["p"]), what)
    kind = e["k"]
    kw = dict(mode=_int(e.get("m", 0), what, "mode") & 0o7777, uid=_int(e.get("u", 0), what, "uid"),
              gid=_int(e.get("g", 0), what, "gid"), mtime_ns=_int(e.get("t", 0), what, "time"),
              rdev=_int(e.get("r", 0), what, "rdev"))
    xattrs = e.get("x", {})
    _need(isinstance(xattrs, dict), what, "bad xattrs")
    try:
        kw["xattrs"] = {path_bytes(k): base64.b64decode(v, validate=True) for k, v in xattrs.items()}
    except (binascii.Error, TypeError, ValueError):
        raise BadImageError(f"{what}: bad xattr value") from None
    cid = None
    if kind == T.FILE:
        cid = e.get("c")
        _need(isinstance(cid, str) and cid in contents, what, f"{e['p']}: unknown content")
        kw["size"] = contents[cid]["size"]
    elif kind == T.SYMLINK:
        _need(isinstance(e.get("l"), str), what, "symlink without target")
        kw["link"] = path_bytes(e["l"])
    elif kind == T.HARDLINK:
        _need(isinstance(e.get("l"), str), what, "hardlink without target")
        kw["link"] = T.clean_path(path_bytes(e["l"]), what)
    entry = T.Entry(kind, path, path_bytes(e["p"]), **kw)
    return entry, cid
