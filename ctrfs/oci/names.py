"""Which NAME:TAG each imported image gets: --name, else what the source says (an OCI
ref.name annotation, docker RepoTags), else the source's file name.  Every name passes the
catalogue's reference grammar."""
import os
import re

from .. import catalogue
from ..errors import BadImageError, UsageError


def split_ref(ref):
    """'a/b:1' -> ('a/b', '1'); a ':' followed by '/' belongs to a registry port."""
    base, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, None
    return base, tag


def check_name(ref, error=UsageError):
    """The stored key of reference ref, or error (UsageError for what the user typed,
    BadImageError for what the source says)."""
    try:
        return catalogue.parse_reference(ref.encode()).key.decode()
    except catalogue.BadNameError as exc:
        raise error(str(exc)) from None


def stem(path):
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
            ref_name = check_name(f"{given_base}:{given_tag or src_tag or 'latest'}")
        elif full:
            ref_name = check_name(ref if src_tag else f"{ref}:latest", BadImageError)
        else:
            ref_name = check_name(f"{stem(path)}:{src_tag or 'latest'}", BadImageError)
        out.append(ref_name.encode())
    if len(set(out)) != len(out):
        raise UsageError("two images of the source would get the same name: give --name without a tag")
    return out
