"""Helpers of the export tests (a uniquely named module): what a tree looks like, read
through FileSystem or from a directory on the host, and applying a tree diff to a copy of
the parent the way an OCI layer is applied."""
import hashlib
import os
import stat

from ctrfs.device import MemoryDevice
from ctrfs.errors import FsError
from ctrfs.format import constants as C
from ctrfs.mkfs.geometry import make_filesystem
from ctrfs.treediff import ENTRY, LINK, OPAQUE, WHITEOUT

ROOT = C.ROOT_INO
CHUNK = 1 << 20


def new_engine(size=64 << 20):
    return make_filesystem(MemoryDevice(bytearray(size)))


# ---- manifests: {path: attributes}, plus hardlink groups ------------------------------------
def _row(mode, uid, gid, mtime, rdev, size, body, xattrs):
    return dict(mode=mode, uid=uid, gid=gid, mtime=mtime,
                rdev=rdev if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else 0,
                size=size if stat.S_ISREG(mode) else None, body=body, xattrs=xattrs)


def fs_manifest(fs, *, root_mtime=True, skip_xattrs=()):
    """(rows, hardlink groups) of a ctrfs tree read through FileSystem."""
    rows, inos = {}, {}

    def visit(path, ino):
        a = fs.getattr(ino)
        if a.is_reg:
            h = hashlib.sha256()
            for off in range(0, a.size, CHUNK):
                h.update(fs.read(ino, off, CHUNK))
            body = h.hexdigest()
        elif stat.S_ISLNK(a.mode):
            body = fs.readlink(ino)
        else:
            body = None
        xattrs = {bytes(n): fs.getxattr(ino, n) for n in sorted(fs.listxattr(ino)) if bytes(n) not in skip_xattrs}
        rows[path] = _row(a.mode, a.uid, a.gid, a.mtime_ns, a.rdev, a.size, body, xattrs)
        if not a.is_dir:
            inos.setdefault(ino, []).append(path)
        else:
            for name, child, _c in list(fs.readdir(ino)):
                visit(path + b"/" + name if path != b"." else name, child)

    visit(b".", ROOT)
    if not root_mtime:
        rows[b"."]["mtime"] = None
    return rows, _groups(inos)


def dir_manifest(root, *, root_mtime=True, skip_xattrs=()):
    """The same for a directory on the host (lstat, no symlink followed)."""
    rows, inos = {}, {}
    root = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames] + ([b"."] if dirpath == root else []):
            path = os.path.join(dirpath, name) if name != b"." else root
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    body = hashlib.file_digest(f, "sha256").hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            else:
                body = None
            xattrs = {os.fsencode(x): os.getxattr(path, x, follow_symlinks=False)
                      for x in sorted(os.listxattr(path, follow_symlinks=False))
                      if os.fsencode(x) not in skip_xattrs}
            rows[rel] = _row(st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_rdev, st.st_size,
                             body, xattrs)
            if not stat.S_ISDIR(st.st_mode):
                inos.setdefault(st.st_ino, []).append(rel)
    if not root_mtime:
        rows[b"."]["mtime"] = None
    return rows, _groups(inos)


def _groups(inos):
    return sorted(sorted(p) for p in inos.values() if len(p) > 1)


def diff_manifests(a, b):
    ra, rb = a[0], b[0]
    lines = [f"only in first: {p!r}" for p in sorted(ra.keys() - rb.keys())]
    lines += [f"only in second: {p!r}" for p in sorted(rb.keys() - ra.keys())]
    for p in sorted(ra.keys() & rb.keys()):
        for k in ra[p]:
            if ra[p][k] != rb[p].get(k):
                lines.append(f"{p!r}: {k} {ra[p][k]!r} != {rb[p].get(k)!r}")
    if a[1] != b[1]:
        lines.append(f"hardlink groups {a[1]!r} != {b[1]!r}")
    return "\n".join(lines[:40])


def assert_same(a, b):
    assert a == b, diff_manifests(a, b)


# ---- applying a diff as a layer ------------------------------------------------------------------
def lookup_path(fs, path):
    """(parent ino, name, ino or None) of a relative path."""
    parts = path.split(b"/")
    d = ROOT
    for part in parts[:-1]:
        d = fs.lookup(d, part)
    try:
        return d, parts[-1], fs.lookup(d, parts[-1])
    except FsError:
        return d, parts[-1], None


def rm_rf(fs, parent, name, ino):
    if fs.getattr(ino).is_dir:
        for child, cino, _c in list(fs.readdir(ino)):
            rm_rf(fs, ino, child, cino)
        fs.rmdir(parent, name)
    else:
        fs.unlink(parent, name)


def copy_attrs(dst, dino, src, sino):
    a = src.getattr(sino)
    for n in dst.listxattr(dino):
        dst.removexattr(dino, bytes(n))
    for n in src.listxattr(sino):
        dst.setxattr(dino, bytes(n), src.getxattr(sino, n))
    dst.setattr(dino, mode=None if stat.S_ISLNK(a.mode) else a.mode, uid=a.uid, gid=a.gid, mtime_ns=a.mtime_ns)


def apply_changes(dst, src, changes):
    """Apply `changes` (from the tree src reads) to FileSystem dst as an OCI layer is
    applied: whiteouts and opaque markers hide what lower layers had, entries replace what
    is at their path (a directory over a directory is kept), directories get their
    attributes last."""
    dirs = []
    for ch in changes:
        if ch.kind == WHITEOUT:
            parent, name, ino = lookup_path(dst, ch.path)
            if ino is not None:
                rm_rf(dst, parent, name, ino)
        elif ch.kind == OPAQUE:
            ino = lookup_path(dst, ch.path)[2] if ch.path else ROOT
            for name, cino, _c in list(dst.readdir(ino)):
                rm_rf(dst, ino, name, cino)
        elif ch.kind == LINK:
            parent, name, ino = lookup_path(dst, ch.path)
            if ino is not None:
                rm_rf(dst, parent, name, ino)
            dst.link(lookup_path(dst, ch.target)[2], parent, name)
        else:
            assert ch.kind == ENTRY
            a = src.getattr(ch.ino)
            if not ch.path:
                dirs.append((ROOT, ch.ino))
                continue
            parent, name, ino = lookup_path(dst, ch.path)
            if ino is not None and not (a.is_dir and dst.getattr(ino).is_dir):
                rm_rf(dst, parent, name, ino)
                ino = None
            if a.is_dir:
                if ino is None:
                    ino = dst.mkdir(parent, name, 0o700).ino
                dirs.append((ino, ch.ino))
                continue
            if stat.S_ISLNK(a.mode):
                ino = dst.symlink(parent, name, src.readlink(ch.ino)).ino
            else:
                ino = dst.mknod(parent, name, a.mode, rdev=a.rdev).ino
                for off in range(0, a.size, CHUNK):
                    dst.write(ino, off, src.read(ch.ino, off, CHUNK))
            copy_attrs(dst, ino, src, ch.ino)
    for dino, sino in reversed(dirs):
        copy_attrs(dst, dino, src, sino)


def walk_paths(fs):
    """[(path, ino, is_dir)] of a tree (root excluded)."""
    out = []

    def visit(path, ino):
        for name, child, _c in list(fs.readdir(ino)):
            p = path + b"/" + name if path else name
            is_dir = fs.getattr(child).is_dir
            out.append((p, child, is_dir))
            if is_dir:
                visit(p, child)

    visit(b"", ROOT)
    return out
