"""Byte streams of an image source: a blob checked against its descriptor while it is read,
decompression sniffed from the first bytes (gzip, zstd or none), and the uncompressed
stream's sha256 (the layer's diff_id).  Every check fails with BadImageError."""
import gzip
import hashlib
import re
import zlib

from ..errors import BadImageError

READ = 1 << 20
_DIGEST = re.compile(r"^(sha256):([0-9a-f]{64})$|^(sha512):([0-9a-f]{128})$")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def split_digest(digest):
    """'sha256:<hex>' -> ('sha256', hex); anything else (a path in disguise) is refused."""
    m = _DIGEST.match(digest if isinstance(digest, str) else "")
    if not m:
        raise BadImageError(f"bad digest {str(digest)[:80]!r}")
    return (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))


class CheckedReader:
    """Reads a blob; refuses more bytes than the descriptor's size, and at the end checks
    size and digest.  digest/size None: only hashed (the digest is then learnt)."""

    def __init__(self, raw, what, digest=None, size=None, algo="sha256"):
        self.raw, self.what, self.size = raw, what, size
        self.algo, self.want = split_digest(digest) if digest else (algo, None)
        self.hash = hashlib.new(self.algo)
        self.pos = 0
        self.done = False
        self.head = b""              # bytes pushed back by a sniff

    def read(self, n=READ):
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        if self.done:
            return b""
        try:
            data = self.raw.read(n)
        except OSError as exc:
            raise BadImageError(f"{self.what}: {exc.strerror or exc}") from None
        if not data:
            self._finish()
            return b""
        self.pos += len(data)
        if self.size is not None and self.pos > self.size:
            raise BadImageError(f"{self.what}: longer than the {self.size} bytes its descriptor says")
        self.hash.update(data)
        return data

    def readinto(self, buf):
        """For readers that fill buffers (ISA-L's gzip): at most one read's worth."""
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def unread(self, data):
        self.head = data + self.head

    def _finish(self):
        self.done = True
        if self.size is not None and self.pos != self.size:
            raise BadImageError(f"{self.what}: {self.pos} bytes, its descriptor says {self.size}")
        if self.want is not None and self.hash.hexdigest() != self.want:
            raise BadImageError(f"{self.what}: digest mismatch (got {self.algo}:{self.hash.hexdigest()[:16]}..., "
                                f"want {self.algo}:{self.want[:16]}...)")

    def drain(self):
        """Read to the end (so the digest is checked); returns the digest 'algo:hex'."""
        while self.read(READ):
            pass
        return f"{self.algo}:{self.hash.hexdigest()}"


def read_all(raw, what, digest=None, size=None, limit=16 << 20):
    """A small blob (manifest, index, config) whole, verified."""
    if size is not None and size > limit:
        raise BadImageError(f"{what}: {size} bytes is more than the {limit} allowed")
    r = CheckedReader(raw, what, digest, size)
    parts, n = [], 0
    while chunk := r.read(READ):
        n += len(chunk)
        if n > limit:
            raise BadImageError(f"{what}: more than the {limit} bytes allowed")
        parts.append(chunk)
    return b"".join(parts)


class _Zstd:
    def __init__(self, src):
        import zstandard
        self._err = zstandard.ZstdError
        self._r = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)

    def read(self, n):
        try:
            return self._r.read(n)
        except self._err as exc:
            raise BadImageError(f"corrupt zstd stream: {exc}") from None


class _Gzip:
    """gzip through ISA-L (python-isal): the same stream API as the standard library's
    gzip, 2.5x faster to inflate, and inflating is most of the reader thread's work."""
    def __init__(self, src):
        from isal import igzip, isal_zlib
        self._errors = (gzip.BadGzipFile, zlib.error, isal_zlib.error, OSError)
        self._g = igzip.GzipFile(fileobj=src, mode="rb")

    def read(self, n):
        try:
            return self._g.read(n)
        except EOFError:
            raise BadImageError("truncated gzip stream") from None
        except self._errors as exc:
            raise BadImageError(f"corrupt gzip stream: {exc}") from None


class LayerStream:
    """The uncompressed bytes of a layer, hashed as they pass, with the last bytes kept so
    the tar reader can look at where the archive stopped.  File-like for tarfile's
    seekable mode: a seek forward reads on, a seek back stays within the kept bytes, and
    read(n) gives n bytes unless the stream ends (tarfile's stream mode instead reads in
    10 KiB records and copies every byte twice more)."""
    WINDOW = 1 << 16

    def __init__(self, src, what):
        self.what = what
        head = src.read(4)
        src.unread(head)
        if head.startswith(GZIP_MAGIC):
            self.inner, self.compression = _Gzip(src), "gzip"
        elif head.startswith(ZSTD_MAGIC):
            self.inner, self.compression = _Zstd(src), "zstd"
        else:
            self.inner, self.compression = src, None
        self.src = src
        self.hash = hashlib.sha256()
        self.pos = 0                  # bytes taken from inner
        self.at = 0                   # the reader's position (at most WINDOW behind pos)
        self.window = bytearray()     # the bytes just before pos
        self.eof = False

    def tell(self):
        return self.at

    def seek(self, offset, whence=0):
        if whence != 0:
            raise BadImageError(f"{self.what}: tar reader seeks from {whence}")
        while self.pos < offset and self._take(min(READ, offset - self.pos)):
            pass
        if self.pos - offset > len(self.window):
            raise BadImageError(f"{self.what}: tar reader lost its place")
        self.at = min(offset, self.pos)
        return self.at

    def read(self, n=READ):
        if n is None or n < 0:
            n = READ
        parts = []
        if self.at < self.pos:                   # bytes seen already: from the window
            start = len(self.window) - (self.pos - self.at)
            parts.append(bytes(memoryview(self.window)[start:start + n]))   # one copy
            self.at += len(parts[0])
            n -= len(parts[0])
        while n > 0:
            data = self._take(n)
            if not data:
                break
            self.at += len(data)
            n -= len(data)
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _take(self, n):
        """Up to n new bytes from the decompressor, hashed and kept in the window."""
        if self.eof:
            return b""
        try:
            data = self.inner.read(n)
        except BadImageError:
            # a blob that is not what its descriptor says is the cause to name: a changed
            # byte breaks the compression too, and usually first
            if isinstance(self.src, CheckedReader) and self.inner is not self.src:
                self.src.drain()
            raise
        if not data:
            self.eof = True
            return b""
        self.hash.update(data)
        self.pos += len(data)
        if len(data) >= self.WINDOW:
            self.window = bytearray(memoryview(data)[-self.WINDOW:])
        else:
            self.window += data
            if len(self.window) > 2 * self.WINDOW:
                del self.window[:-self.WINDOW]
        return data

    def bytes_at(self, offset, n):
        """Up to n bytes from stream offset `offset` (at most WINDOW behind the read
        position), reading on as needed."""
        while self.pos < offset + n and self._take(READ):
            pass
        start = len(self.window) - (self.pos - offset)
        if start < 0:
            raise BadImageError(f"{self.what}: tar reader lost its place")
        return bytes(self.window[start:start + n])

    def finish(self):
        """Read to the end of the stream and of its blob; the diff_id 'sha256:<hex>'."""
        while self._take(READ):
            pass
        if isinstance(self.src, CheckedReader):
            self.src.drain()
        return "sha256:" + self.hash.hexdigest()
