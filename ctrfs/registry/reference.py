"""Where an image lives in a registry: `[docker://]HOST[:PORT]/REPO[:TAG|@sha256:HEX]`, parsed
with the catalogue's reference grammar (so whatever ctrfs can name, it can push, and the
reverse).  The host is required: ctrfs never expands a short name to docker.io."""
from dataclasses import dataclass

from .. import catalogue
from ..errors import BadImageError, UsageError
from ..oci.streams import split_digest

TRANSPORT = "docker://"


@dataclass(frozen=True)
class Remote:
    host: str         # "registry.example:5000"
    repo: str         # "library/busybox"
    tag: str          # for a digest reference: "sha256-HEX", the tag it is stored under
    digest: str | None = None

    @property
    def ref(self):
        """What the manifest is asked for by: the digest, else the tag."""
        return self.digest or self.tag

    def __str__(self):
        return f"{self.host}/{self.repo}" + (f"@{self.digest}" if self.digest else f":{self.tag}")


def parse_remote(text):
    """'docker://127.0.0.1:5000/a/b:1' or '127.0.0.1:5000/a/b' (tag latest) -> Remote."""
    raw = text.removeprefix(TRANSPORT)
    raw, at, digest = raw.partition("@")
    if at:
        try:
            if split_digest(digest)[0] != "sha256" or ":" in raw.rpartition("/")[2]:
                raise BadImageError("")
        except BadImageError:
            raise UsageError(f"{text}: a digest is @sha256:<64 hex digits>, after no tag") from None
    try:
        ref = catalogue.parse_reference(raw)
    except catalogue.BadNameError as exc:
        raise UsageError(str(exc).replace("bad image name", "bad registry reference", 1)) from None
    host, sep, repo = ref.name.partition("/")
    if not sep or not ("." in host or ":" in host or host == "localhost"):
        raise UsageError(f"{text}: name the registry: HOST[:PORT]/REPO[:TAG] "
                         "(short names are not expanded to docker.io)")
    if at:
        return Remote(host, repo, "sha256-" + digest.split(":", 1)[1], digest)
    return Remote(host, repo, ref.tag)


DIR = "dir:"


def parse_dir(text):
    """'dir:PATH[:TAG]' -> (PATH, TAG or 'latest'); None for anything else."""
    if not text.startswith(DIR):
        return None
    rest = text[len(DIR):]
    path, sep, tag = rest.rpartition(":")
    if not sep or "/" in tag or not tag:
        path, tag = rest, "latest"
    if not path:
        raise UsageError(f"{text}: no directory")
    try:
        catalogue.parse_reference(f"x:{tag}")
    except catalogue.BadNameError:
        raise UsageError(f"{text}: bad tag {tag!r}") from None
    return path, tag
