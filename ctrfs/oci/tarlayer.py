"""A tar layer stream read with OCI layer semantics, as a sequence of events: an Entry per
member (paths cleaned, whiteouts and opaque markers recognised, PAX times in ns, xattrs),
each regular file followed by its data as (offset, bytes) pieces.

Only what the stream itself shows is refused here (`..` climbing out of the root, a size
that lies, a truncated or corrupt stream); what needs the tree (hardlink targets, a
symlink on the way) is the applier's job.  The stream's tail is checked: tarfile ends
quietly at a broken header, so the reader looks at the bytes where it stopped."""
import os
import stat
import tarfile
from decimal import Decimal, InvalidOperation

from ..errors import BadImageError

WHITEOUT = b".wh."
OPAQUE = b".wh..wh..opq"
PIECE = 1 << 20

FILE, DIR, SYMLINK, HARDLINK, CHAR, BLOCK, FIFO, WHITEOUT_KIND, OPAQUE_KIND = (
    "file", "dir", "symlink", "hardlink", "char", "block", "fifo", "whiteout", "opaque")
_KINDS = {tarfile.REGTYPE: FILE, tarfile.AREGTYPE: FILE, tarfile.CONTTYPE: FILE,
          tarfile.GNUTYPE_SPARSE: FILE, tarfile.DIRTYPE: DIR, tarfile.SYMTYPE: SYMLINK,
          tarfile.LNKTYPE: HARDLINK, tarfile.CHRTYPE: CHAR, tarfile.BLKTYPE: BLOCK,
          tarfile.FIFOTYPE: FIFO}
_IFMT = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, CHAR: stat.S_IFCHR, BLOCK: stat.S_IFBLK,
         FIFO: stat.S_IFIFO, SYMLINK: stat.S_IFLNK}


class Entry:
    """One member.  path: tuple of name components (() is the root).  link: a symlink's
    target (bytes, verbatim) or a hardlink's target path (tuple)."""
    __slots__ = ("kind", "path", "mode", "uid", "gid", "mtime_ns", "atime_ns", "rdev", "size",
                 "link", "xattrs", "name")

    def __init__(self, kind, path, name=b"", **kw):
        self.kind, self.path, self.name = kind, path, name
        self.mode = kw.get("mode", 0)
        self.uid, self.gid = kw.get("uid", 0), kw.get("gid", 0)
        self.mtime_ns = kw.get("mtime_ns", 0)
        self.atime_ns = kw.get("atime_ns", self.mtime_ns)
        self.rdev, self.size = kw.get("rdev", 0), kw.get("size", 0)
        self.link, self.xattrs = kw.get("link"), kw.get("xattrs", {})

    def st_mode(self):
        return _IFMT[self.kind] | self.mode

    def __repr__(self):
        return f"<{self.kind} {b'/'.join(self.path)!r}>"


def _b(text):
    return text.encode("utf-8", "surrogateescape")


def clean_path(raw, what):
    """Archive path -> components; absolute paths are rooted at the image root, `.` and
    empty parts dropped, `..` resolved lexically and refused above the root."""
    out = []
    for part in raw.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if not out:
                raise BadImageError(f"{what} {raw.decode('utf-8', 'replace')!r} climbs out of the root")
            out.pop()
        else:
            out.append(part)
    return tuple(out)


def _ns(pax, key, fallback):
    text = pax.get(key)
    if text is None:
        return fallback
    try:
        return int(Decimal(text) * 1_000_000_000)
    except (InvalidOperation, ValueError):
        raise BadImageError(f"bad PAX {key} {text[:40]!r}") from None


def entry_of(m):
    """An Entry for a TarInfo, or None for members a layer ignores."""
    raw = _b(m.name)
    path = clean_path(raw, "member")
    show = raw.decode("utf-8", "replace")
    kind = _KINDS.get(m.type)
    if kind is None:
        raise BadImageError(f"{show}: unsupported tar member type {m.type!r}")
    if path and path[-1].startswith(WHITEOUT):
        base = path[-1]
        if base == OPAQUE:
            return Entry(OPAQUE_KIND, path[:-1], raw)
        if base.startswith(WHITEOUT + WHITEOUT):
            return None                       # aufs bookkeeping (.wh..wh.plnk etc.)
        target = base[len(WHITEOUT):]
        if target in (b".", b".."):
            raise BadImageError(f"{show}: whiteout of {target!r}")
        return Entry(WHITEOUT_KIND, path[:-1] + (target,), raw)
    pax = m.pax_headers
    mtime = _ns(pax, "mtime", int(m.mtime) * 1_000_000_000)
    xattrs = {}
    for key, val in pax.items():
        if key.startswith("SCHILY.xattr."):
            xattrs[_b(key[len("SCHILY.xattr."):])] = _b(val)
    e = Entry(kind, path, raw, mode=m.mode & 0o7777, uid=m.uid, gid=m.gid, mtime_ns=mtime,
              atime_ns=_ns(pax, "atime", mtime), size=m.size if kind == FILE else 0, xattrs=xattrs)
    if kind in (CHAR, BLOCK):
        e.rdev = os.makedev(m.devmajor, m.devminor)
    elif kind == SYMLINK:
        e.link = _b(m.linkname)
    elif kind == HARDLINK:
        e.link = clean_path(_b(m.linkname), f"{show}: hardlink target")
    return e


def read_layer(stream, what="layer", recipe=None):
    """Events of one layer: Entry, then (offset, bytes) pieces of a file's data.  stream
    is a streams.LayerStream (or any file-like with bytes_at); recipe: a recipe.Recorder
    told of every member."""
    try:
        # seekable mode ("r:"): file data is read straight from the stream in pieces
        # (stream mode copies it through 10 KiB records); LayerStream seeks only forward
        tf = tarfile.open(fileobj=stream, mode="r:", encoding="utf-8", errors="surrogateescape")
    except tarfile.ReadError as exc:
        raise BadImageError(f"{what}: not a tar stream ({exc})") from None
    try:
        while True:
            m = tf.next()
            if m is None:
                break
            tf.members.clear()                    # tarfile would keep every header
            e = entry_of(m)
            if recipe is not None:
                recipe.member(m, e.path if e is not None and e.kind == FILE else None)
            if e is None:
                continue
            yield e
            if e.kind == FILE and e.size:
                yield from _data(tf, stream, m, e)
    except tarfile.TarError as exc:
        raise BadImageError(f"{what}: {_tar_message(exc)}") from None
    except EOFError:
        raise BadImageError(f"{what}: truncated stream") from None
    if stream.pos == 0:
        raise BadImageError(f"{what}: empty stream, not a tar layer")
    tail = stream.bytes_at(tf.offset, tarfile.BLOCKSIZE)
    if tail and tail != bytes(tarfile.BLOCKSIZE):
        why = "truncated" if len(tail) < tarfile.BLOCKSIZE else "corrupt"
        raise BadImageError(f"{what}: {why} tar header at offset {tf.offset}")


def _tar_message(exc):
    text = str(exc)
    return "truncated stream (a member is shorter than its header says)" if "unexpected end" in text else text


def _data(tf, stream, m, e):
    # a sparse member's regions are mapped by tarfile; any other is read from the stream
    f = tf.extractfile(m) if m.sparse else stream
    regions = m.sparse or [(0, m.size)]
    if not m.sparse:
        stream.seek(m.offset_data)
    for offset, length in regions:
        if m.sparse:
            f.seek(offset)
        done = 0
        while done < length:
            piece = f.read(min(PIECE, length - done))
            if not piece:
                raise BadImageError(f"{_b(m.name).decode('utf-8', 'replace')}: truncated stream "
                                    f"(file data ends at {offset + done} of {e.size} bytes)")
            yield (offset + done, piece)
            done += len(piece)
