"""What mkfs must not overwrite: mounted or busy devices, and recognised file systems."""
import os
import shutil
import stat
import subprocess

from ..engine import read_superblock
from ..errors import CorruptError, DeviceError
from ..format import constants as C

BLKID_FOUND = 0
BLKID_AMBIVALENT = 8   # several signatures: certainly not empty


def _unescape(field):
    """Mount tables escape space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountinfo():
    """[(major:minor, source, mountpoint, fstype)] from /proc/self/mountinfo, in mount order."""
    rows = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                a, b = pre.split(), post.split()
                if len(a) >= 5 and len(b) >= 2:
                    rows.append((a[2], _unescape(b[1]), _unescape(a[4]), b[0]))
    except OSError:
        pass
    return rows


def mount_table():
    """[(major:minor or None, source, mountpoint)] from /proc/self/mountinfo and, in case
    mountinfo is unreadable (old kernels, restricted /proc), /proc/mounts."""
    rows = [r[:3] for r in mountinfo()]
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    rows.append((None, _unescape(parts[0]), _unescape(parts[1])))
    except OSError:
        pass
    return rows


def _devno(st):
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def _same_path(a, b):
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def mounted_at(path, st, table):
    """Where the device (a block device by number or path, a file by path) is mounted."""
    devno = _devno(st) if stat.S_ISBLK(st.st_mode) else None
    for num, source, mnt in table:
        if (devno is not None and num == devno) or (source.startswith("/") and _same_path(source, path)):
            return mnt
    return None


def backing_loops(path):
    """Loop devices attached to a file (`losetup -j FILE`); [] when losetup is missing."""
    exe = shutil.which("losetup")
    if exe is None:
        return []
    res = subprocess.run([exe, "-j", os.path.abspath(path)], capture_output=True, text=True)
    return [line.split(":", 1)[0] for line in res.stdout.splitlines() if line.startswith("/dev/")]


def _sys_block(st):
    return f"/sys/dev/block/{_devno(st)}"


def partitions_and_holders(st):
    """(partition device numbers, holder names) of a block device from sysfs."""
    base = _sys_block(st)
    parts, holders = [], []
    try:
        for name in os.listdir(base):
            if os.path.exists(f"{base}/{name}/partition"):
                with open(f"{base}/{name}/dev") as f:
                    parts.append(f.read().strip())
        holders = os.listdir(f"{base}/holders")
    except OSError:
        pass
    return parts, holders


def check_not_in_use(path, st):
    """DeviceError if the device, a partition of it, or a loop device over the file is mounted
    or held (device-mapper, md).  Opening with O_EXCL then catches what is left."""
    table = mount_table()
    mnt = mounted_at(path, st, table)
    if mnt:
        raise DeviceError(f"{path} is mounted on {mnt}")
    if stat.S_ISBLK(st.st_mode):
        parts, holders = partitions_and_holders(st)
        for num, _source, mnt in table:
            if num in parts:
                raise DeviceError(f"{path}: a partition of it is mounted on {mnt}")
        if holders:
            raise DeviceError(f"{path} is in use by {', '.join(sorted(holders))}")
        return
    for loop in backing_loops(path):
        try:
            mnt = mounted_at(loop, os.stat(loop), table)
        except OSError:
            continue
        if mnt:
            raise DeviceError(f"{path} is mounted on {mnt} through {loop}")


def existing_filesystem(dev):
    """A description of the file system on dev ('a ctrfs file system', 'an ext4 file
    system', 'a gpt partition table'), or None."""
    if dev.size >= len(C.SUPERBLOCK_MAGIC) and dev.read_at(0, len(C.SUPERBLOCK_MAGIC)) == C.SUPERBLOCK_MAGIC:
        return "a ctrfs file system"
    try:
        read_superblock(dev)
        return "a ctrfs file system (mirror superblock)"
    except (CorruptError, DeviceError):
        pass
    return blkid_type(dev.path)


def blkid_type(path):
    exe = shutil.which("blkid")
    if exe is None:
        return None
    res = subprocess.run([exe, "-p", "-o", "export", path], capture_output=True, text=True)
    if res.returncode == BLKID_AMBIVALENT:
        return "several file system signatures (blkid: ambivalent result)"
    if res.returncode != BLKID_FOUND:
        return None
    tags = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    if "TYPE" in tags:
        return f"a{'n' if tags['TYPE'][:1] in 'aeiou' else ''} {tags['TYPE']} " \
               f"{'signature' if tags.get('USAGE') not in ('filesystem', None) else 'file system'}"
    if "PTTYPE" in tags:
        return f"a {tags['PTTYPE']} partition table"
    return None
