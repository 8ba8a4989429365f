"""A deterministic POSIX tar (pax) writer: ustar headers, a pax extended header when a
field does not fit (long names and link targets, big ids and sizes, nanosecond times,
xattrs as SCHILY.xattr.*), numeric owners only, no wall clock.  Written here rather than
with tarfile because tarfile puts float seconds into pax mtime and escapes binary xattr
values through str; Go's archive/tar (umoci, skopeo, containers/storage) reads this."""

BLOCK = 512
REGTYPE, LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE, PAXTYPE = (bytes((c,)) for c in b"0123456x")
PAX_NAME = b"././@PaxHeader"
_MAX_ID = 0o7777777
_MAX_SIZE = 0o77777777777


def _octal(n, width):
    return b"%0*o\0" % (width - 1, n)


def _pax_record(key, value):
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(b"%d" % n) + len(body) != n:
        n += 1
    return b"%d" % n + body


def pax_time(ns):
    sign = b"-" if ns < 0 else b""
    sec, frac = divmod(abs(ns), 10 ** 9)
    return sign + (b"%d.%09d" % (sec, frac)).rstrip(b"0").rstrip(b".")


def _header(name, typeflag, mode, uid, gid, size, mtime, linkname, major, minor):
    hdr = bytearray(BLOCK)
    hdr[0:len(name)] = name
    hdr[100:108] = _octal(mode & 0o7777, 8)
    hdr[108:116] = _octal(uid, 8)
    hdr[116:124] = _octal(gid, 8)
    hdr[124:136] = _octal(size, 12)
    hdr[136:148] = _octal(mtime, 12)
    hdr[148:156] = b" " * 8
    hdr[156:157] = typeflag
    hdr[157:157 + len(linkname)] = linkname
    hdr[257:265] = b"ustar\x0000"
    hdr[329:337] = _octal(major, 8)
    hdr[337:345] = _octal(minor, 8)
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    return bytes(hdr)


class TarWriter:
    """out: anything with write(bytes)."""

    def __init__(self, out):
        self.out = out

    def add(self, name, typeflag, *, mode=0, uid=0, gid=0, size=0, mtime_ns=0, linkname=b"",
            major=0, minor=0, xattrs=(), data=None):
        """One member; data: an iterable of byte chunks totalling exactly `size`."""
        pax = []
        if len(name) > 100 or not name.isascii():
            pax.append((b"path", name))
            name = name[:100]
        if len(linkname) > 100 or not linkname.isascii():
            pax.append((b"linkpath", linkname))
            linkname = linkname[:100]
        if uid > _MAX_ID:
            pax.append((b"uid", b"%d" % uid))
            uid = 0
        if gid > _MAX_ID:
            pax.append((b"gid", b"%d" % gid))
            gid = 0
        if size > _MAX_SIZE:
            pax.append((b"size", b"%d" % size))
        sec = mtime_ns // 10 ** 9
        if mtime_ns % 10 ** 9 or not 0 <= sec < 8 ** 11:
            pax.append((b"mtime", pax_time(mtime_ns)))
            sec = sec if 0 <= sec < 8 ** 11 else 0
        for key, value in xattrs:
            pax.append((b"SCHILY.xattr." + key, value))
        if pax:
            body = b"".join(_pax_record(k, v) for k, v in pax)
            self.out.write(_header(PAX_NAME, PAXTYPE, 0o644, 0, 0, len(body), 0, b"", 0, 0))
            self._write_padded(body)
        self.out.write(_header(name, typeflag, mode, uid, gid, size if size <= _MAX_SIZE else 0, sec,
                               linkname, major, minor))
        if size:
            written = 0
            for chunk in data:
                self.out.write(chunk)
                written += len(chunk)
            if written != size:
                raise ValueError(f"tar member {name!r}: {written} bytes written, {size} announced")
            if size % BLOCK:
                self.out.write(bytes(BLOCK - size % BLOCK))

    def _write_padded(self, body):
        self.out.write(body)
        if len(body) % BLOCK:
            self.out.write(bytes(BLOCK - len(body) % BLOCK))

    def close(self):
        self.out.write(bytes(2 * BLOCK))
