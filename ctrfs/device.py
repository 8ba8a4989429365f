"""Device I/O: a loop file or a block device, addressed in blocks."""
import errno
import fcntl
import os
import stat
import struct

from . import devlock
from .errors import DeviceError

BLKGETSIZE64 = 0x80081272
BLKROGET = 0x125E


class Device:
    """Aligned whole-block reads and writes with pread/pwritev, and fsync as the barrier.

    Opening read-write takes an exclusive flock on the path (and O_EXCL on block devices)
    and on the device's identity lock (ctrfs/devlock.py: the same lock whether the file, a
    symlink, a bind mount or a loop device over the file was opened), so two processes
    never write one device; read-only opens take both shared."""

    def __init__(self, path, *, readonly=False, block_size=4096):
        self.path = path
        self.readonly = readonly
        self.block_size = block_size
        self.lock_fd = None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DeviceError(f"{path}: no such file or device") from None
        except OSError as exc:
            raise DeviceError(f"{path}: {exc.strerror}") from None
        self.is_blockdev = stat.S_ISBLK(st.st_mode)
        if not (self.is_blockdev or stat.S_ISREG(st.st_mode)):
            raise DeviceError(f"{path}: not a regular file or block device")
        flags = os.O_RDONLY if readonly else os.O_RDWR
        if self.is_blockdev and not readonly:
            flags |= os.O_EXCL
        try:
            self.fd = os.open(path, flags | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise DeviceError(f"{path}: device is busy (mounted or in use)") from None
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise DeviceError(f"{path}: cannot open read-write ({exc.strerror})") from None
            raise DeviceError(f"{path}: {exc.strerror}") from None
        try:
            self._lock()
            self.size = self._size()
            if self.is_blockdev and not readonly and self._blk_readonly():
                raise DeviceError(f"{path}: block device is read-only")
        except BaseException:
            self.close()
            raise

    def _lock(self):
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if self.readonly else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            self.lock_fd = devlock.lock(self.fd, exclusive=not self.readonly)
        except BlockingIOError:
            raise DeviceError(f"{self.path}: in use by another ctrfs process "
                              "(mounted, through this or another path?)") from None

    def _size(self):
        if self.is_blockdev:
            buf = fcntl.ioctl(self.fd, BLKGETSIZE64, b"\0" * 8)
            return struct.unpack("Q", buf)[0]
        return os.fstat(self.fd).st_size

    def _blk_readonly(self):
        buf = fcntl.ioctl(self.fd, BLKROGET, b"\0" * 4)
        return struct.unpack("i", buf)[0] != 0

    @property
    def blocks(self):
        return self.size // self.block_size

    def read(self, blockno, count=1):
        want = count * self.block_size
        data = os.pread(self.fd, want, blockno * self.block_size)
        if len(data) != want:
            raise DeviceError(f"{self.path}: short read at block {blockno}")
        return data

    def read_into(self, blockno, buf):
        """Whole blocks from blockno into buf (a writable buffer of whole blocks): one
        preadv, no copy."""
        if os.preadv(self.fd, [buf], blockno * self.block_size) != len(buf):
            raise DeviceError(f"{self.path}: short read at block {blockno}")

    def read_at(self, offset, length):
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise DeviceError(f"{self.path}: short read at byte {offset}")
        return data

    def write(self, blockno, buffers):
        """Write a list of whole blocks (bytes-like) contiguously from blockno."""
        if self.readonly:
            raise DeviceError(f"{self.path}: opened read-only")
        total = sum(len(b) for b in buffers)
        done = os.pwritev(self.fd, buffers, blockno * self.block_size)
        if done != total:
            raise DeviceError(f"{self.path}: short write at block {blockno}")

    def flush(self):
        if not self.readonly:
            os.fsync(self.fd)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.lock_fd is not None:      # after the device: its writes are done
            os.close(self.lock_fd)
            self.lock_fd = None


class MemoryDevice:
    """A device in RAM with the same interface (tests, crash simulation)."""

    is_blockdev = False
    path = "<memory>"

    def __init__(self, data, *, block_size=4096, readonly=False):
        self.data = data if isinstance(data, bytearray) else bytearray(data)
        self.block_size = block_size
        self.readonly = readonly
        self.size = len(self.data)

    @property
    def blocks(self):
        return self.size // self.block_size

    def read(self, blockno, count=1):
        start = blockno * self.block_size
        end = start + count * self.block_size
        if end > self.size:
            raise DeviceError(f"{self.path}: short read at block {blockno}")
        return bytes(self.data[start:end])

    def read_into(self, blockno, buf):
        start = blockno * self.block_size
        if start + len(buf) > self.size:
            raise DeviceError(f"{self.path}: short read at block {blockno}")
        buf[:] = self.data[start:start + len(buf)]

    def read_at(self, offset, length):
        if offset + length > self.size:
            raise DeviceError(f"{self.path}: short read at byte {offset}")
        return bytes(self.data[offset:offset + length])

    def write(self, blockno, buffers):
        if self.readonly:
            raise DeviceError(f"{self.path}: opened read-only")
        pos = blockno * self.block_size
        for buf in buffers:
            self.data[pos:pos + len(buf)] = buf
            pos += len(buf)

    def flush(self):
        pass

    def close(self):
        pass
