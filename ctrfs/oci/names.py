"""Which NAME:TAG each imported image gets: --name, else what the source says (an OCI
ref.name annotation, docker RepoTags), else the source's file name.

The name check here is a stand-in: REPLACE with the image-name grammar of
ctrfs/catalogue.py when that lands."""
import os
import re

from ..errors import BadImageError, UsageError

# docker reference grammar, simplified: [host[:port]/]path[:tag]  (REPLACE: catalogue)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def split_ref(ref):
    """'a/b:1' -> ('a/b', '1'); a ':' followed by '/' belongs to a registry port."""
    base, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, None
    return base, tag


def check_name(ref, error=UsageError):
    """NAME:TAG or raise error (REPLACE with the catalogue's check)."""
    base, tag = split_ref(ref)
    if tag is None or not _NAME.match(base) or not _TAG.match(tag):
        raise error(f"bad image name {ref!r} (want NAME:TAG, e.g. busybox:1.36 or reg.example:5000/app:v2)")
    return ref


def _stem(path):
    base = os.path.basename(os.path.normpath(path)).lower()
    for ext in (".tar.gz", ".tar.zst", ".tgz", ".tar", ".oci"):
        base = base.removesuffix(ext)
    base = re.sub(r"[^a-z0-9._-]+", "-", base).strip("._-")
    return base or "image"


def plan_names(kind, path, images, name):
    """[bytes NAME:TAG] for the images, in order."""
    given_base, given_tag = split_ref(name) if name else (None, None)
    if name and given_tag is not None and len(images) > 1:
        raise UsageError(f"--name {name} names one image, the source holds {len(images)} "
                         "(pick one tag, or give --name without a tag)")
    if kind == "tar" and path == "-" and not name:
        raise UsageError("a layer on standard input needs --name NAME[:TAG]")
    out = []
    for img in images:
        ref = img.ref
        full = ref is not None and (kind == "docker-archive" or "/" in ref or ":" in ref)
        src_base, src_tag = split_ref(ref) if full else (None, ref)
        if name:
            ref_name = f"{given_base}:{given_tag or src_tag or 'latest'}"
            check_name(ref_name)
        elif full:
            ref_name = ref if src_tag else f"{ref}:latest"
            check_name(ref_name, BadImageError)
        else:
            ref_name = f"{_stem(path)}:{src_tag or 'latest'}"
            check_name(ref_name, BadImageError)
        out.append(ref_name.encode())
    if len(set(out)) != len(out):
        raise UsageError("two images of the source would get the same name: give --name without a tag")
    return out
