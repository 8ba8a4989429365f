"""Image sources: an OCI image layout (oci-layout, index.json, nested indexes, manifests,
configs), a docker-archive tar (manifest.json, as `skopeo copy ... docker-archive:` and
`podman save` write it), or a single tar layer.  Each yields Image records whose layers
open as verified byte streams; nothing here touches the device."""
import json
import os
import platform
import tarfile
from dataclasses import dataclass, field

from ..errors import BadImageError, UsageError
from .streams import CheckedReader, read_all, split_digest

REF_NAME = "org.opencontainers.image.ref.name"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json")
SMALL = 4 << 20              # manifests and indexes (what registries accept)
CONFIG_MAX = 16 << 20
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


@dataclass
class Layer:
    what: str                     # for messages: "layer 2 (sha256:abcd...)"
    open: object                  # () -> CheckedReader of the layer blob
    diff_id: str | None = None    # from the config; None: learnt while reading
    source: dict | None = None    # its manifest descriptor (mediaType, digest, size), kept with the layer


@dataclass
class Image:
    ref: str | None               # the name the source gives it (tag or full reference)
    layers: list = field(default_factory=list)
    config: bytes | None = None   # the config blob, verbatim


# ---- SOURCE arguments ------------------------------------------------------------------------
def parse_source(text):
    """'oci:DIR[:TAG]' / 'docker-archive:FILE[:REF]' / PATH / '-' -> (kind, path, ref)."""
    for kind in ("oci", "docker-archive"):
        if text.startswith(kind + ":"):
            rest = text[len(kind) + 1:]
            path, ref = rest, None
            if not os.path.exists(rest) and ":" in rest:
                path, ref = rest.split(":", 1)
            if not path:
                raise UsageError(f"{text}: no path")
            return kind, path, ref
    return "tar", text, None


def _json(raw, what):
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadImageError(f"{what}: not JSON ({exc})") from None
    if not isinstance(doc, (dict, list)):
        raise BadImageError(f"{what}: not a JSON object")
    return doc


def _descriptor(d, what):
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str) or not isinstance(d.get("size"), int):
        raise BadImageError(f"{what}: malformed descriptor")
    split_digest(d["digest"])
    if d["size"] < 0:
        raise BadImageError(f"{what}: negative size")
    return d


def _short(digest):
    return digest[:19] + "..."


def _config_layers(config_raw, n, what):
    cfg = _json(config_raw, what)
    rootfs = cfg.get("rootfs") if isinstance(cfg, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or (rootfs.get("type") not in (None, "layers")):
        raise BadImageError(f"{what}: no rootfs.diff_ids")
    if len(ids) != n:
        raise BadImageError(f"{what}: {len(ids)} diff_ids for {n} layers")
    for d in ids:
        split_digest(d)
    return ids


# ---- OCI image layout ------------------------------------------------------------------------
class OciLayout:
    def __init__(self, path):
        self.path = path
        try:
            with open(os.path.join(path, "oci-layout"), "rb") as f:
                marker = _json(f.read(SMALL), f"{path}/oci-layout")
            with open(os.path.join(path, "index.json"), "rb") as f:
                self.index = _json(f.read(SMALL), f"{path}/index.json")
        except FileNotFoundError as exc:
            raise UsageError(f"{path}: not an OCI image layout (no {os.path.basename(exc.filename)})") from None
        except (IsADirectoryError, NotADirectoryError):
            raise UsageError(f"{path}: not an OCI image layout") from None
        if not isinstance(marker, dict) or "imageLayoutVersion" not in marker:
            raise BadImageError(f"{path}/oci-layout: no imageLayoutVersion")

    def blob(self, d, what=None):
        algo, hexd = split_digest(d["digest"])
        what = what or f"blob {_short(d['digest'])}"
        path = os.path.join(self.path, "blobs", algo, hexd)
        try:
            raw = open(path, "rb")
        except FileNotFoundError:
            raise BadImageError(f"{what} is missing from {self.path}") from None
        return CheckedReader(raw, what, d["digest"], d["size"])

    def small(self, d, what, limit=SMALL):
        r = self.blob(d, what)
        try:
            return read_all(r, what, d["digest"], d["size"], limit)
        finally:
            r.raw.close()

    def manifests(self):
        """[(ref, manifest descriptor)] of the index, nested indexes resolved to this
        machine's platform."""
        out = []
        self._walk(self.index, None, out, 0)
        return out

    def _walk(self, index, ref, out, depth):
        if depth > 4:
            raise BadImageError(f"{self.path}: indexes nested too deep")
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list):
            raise BadImageError(f"{self.path}: index without manifests")
        picked = []
        for d in entries:
            _descriptor(d, f"{self.path}: index entry")
            r = (d.get("annotations") or {}).get(REF_NAME, ref)
            picked.append((r, d))
        if depth and len(picked) > 1:
            picked = [p for p in picked if platform_ok(p[1])][:1] or picked[:1]
        for r, d in picked:
            if d.get("mediaType") in INDEX_TYPES:
                self._walk(_json(self.small(d, f"index {_short(d['digest'])}"), "index"), r, out, depth + 1)
            else:
                out.append((r, d))

    def image(self, ref, d):
        what = f"manifest {_short(d['digest'])}"
        return manifest_image(ref, self.small(d, what), d.get("mediaType"), what, self.small, self.blob)


def manifest_image(ref, raw, mediatype, what, small, blob):
    """The Image of an image manifest's bytes (OCI or Docker schema 2), wherever they
    came from: small(descriptor, what, limit) -> the verified bytes of its config,
    blob(descriptor, what) -> a CheckedReader of a layer."""
    m = _json(raw, what)
    if not isinstance(m, dict) or m.get("mediaType", mediatype) not in MANIFEST_TYPES + (None,):
        raise BadImageError(f"{what}: not an image manifest ({m.get('mediaType') if isinstance(m, dict) else m!r})")
    cd = _descriptor(m.get("config"), f"{what}: config")
    config = small(cd, f"config {_short(cd['digest'])}", CONFIG_MAX)
    layers = m.get("layers")
    if not isinstance(layers, list):
        raise BadImageError(f"{what}: no layers")
    ids = _config_layers(config, len(layers), f"config {_short(cd['digest'])}")
    img = Image(ref, config=config)
    for i, (ld, diff) in enumerate(zip(layers, ids)):
        _descriptor(ld, f"{what}: layer {i}")
        mt = ld.get("mediaType", "")
        if "tar" not in mt or "encrypted" in mt:
            raise BadImageError(f"{what}: layer {i} has media type {mt!r}, not a tar layer")
        lwhat = f"layer {i + 1} ({_short(ld['digest'])})"
        img.layers.append(Layer(lwhat, (lambda ld=ld, lwhat=lwhat: blob(ld, lwhat)), diff, _source(ld)))
    return img


def _source(d):
    """The descriptor a layer keeps, when its media type fits the format's field."""
    mt = d.get("mediaType")
    if not isinstance(mt, str) or not mt.isascii() or not 0 < len(mt) < 256 \
            or split_digest(d["digest"])[0] != "sha256" or d["size"] >= 1 << 64:
        return None
    return {"mediaType": mt, "digest": d["digest"], "size": d["size"]}


def platform_ok(d):
    p = d.get("platform") or {}
    arch = _ARCH.get(platform.machine(), platform.machine())
    return p.get("os", "linux") == "linux" and p.get("architecture") == arch


def oci_images(path, tag=None):
    layout = OciLayout(path)
    found = layout.manifests()
    if tag is not None:
        chosen = [(r, d) for r, d in found if r == tag]
        if not chosen:
            tags = ", ".join(sorted({r for r, _d in found if r})) or "none"
            raise UsageError(f"{path}: no image tagged {tag!r} (tags: {tags})")
    else:
        chosen = [(r, d) for r, d in found if r] or (found if len(found) == 1 else [])
        if not chosen:
            raise UsageError(f"{path}: {len(found)} untagged images; name one as oci:DIR:TAG")
    return [layout.image(r, d) for r, d in chosen]


# ---- docker-archive ------------------------------------------------------------------------------
class DockerArchive:
    def __init__(self, path):
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:")
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except (tarfile.TarError, IsADirectoryError) as exc:
            raise BadImageError(f"{path}: not a docker-archive tar ({exc})") from None
        try:
            self.members = {m.name.lstrip("./") if m.name.startswith("./") else m.name: m
                            for m in self.tar.getmembers()}
        except tarfile.TarError as exc:
            raise BadImageError(f"{path}: corrupt tar ({exc})") from None

    def member(self, name, what):
        m = self.members.get(name) if isinstance(name, str) else None
        if m is None:
            raise BadImageError(f"{self.path}: {what} {name!r} is missing")
        try:
            f = self.tar.extractfile(m)
        except (tarfile.TarError, KeyError) as exc:
            raise BadImageError(f"{self.path}: {what} {name!r}: {exc}") from None
        if f is None:
            raise BadImageError(f"{self.path}: {what} {name!r} is not a file")
        return f

    def images(self, ref=None):
        raw = self.member("manifest.json", "member").read(SMALL + 1)
        entries = _json(raw, f"{self.path}: manifest.json")
        if not isinstance(entries, list) or not entries:
            raise BadImageError(f"{self.path}: manifest.json lists no images")
        out = []
        for n, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("Layers"), list):
                raise BadImageError(f"{self.path}: manifest.json entry {n} is malformed")
            tags = [t for t in e.get("RepoTags") or [] if isinstance(t, str)]
            if ref is not None:
                if ref.startswith("@"):
                    if ref != f"@{n}":
                        continue
                elif not any(t == ref or t.endswith("/" + ref) for t in tags):
                    continue
                tags = [ref] if not ref.startswith("@") else tags[:1]
            out.extend(self._image(e, t) for t in (tags or [None]))
        if not out:
            raise UsageError(f"{self.path}: no image {ref!r} in the archive")
        return out

    def _image(self, e, tag):
        cname = e.get("Config")
        f = self.member(cname, "config")
        algo_hex = os.path.basename(cname).removesuffix(".json")
        digest = "sha256:" + algo_hex if len(algo_hex) == 64 else None
        config = read_all(CheckedReader(f, f"config {cname}", digest), f"config {cname}", limit=CONFIG_MAX)
        ids = _config_layers(config, len(e["Layers"]), f"config {cname}")
        img = Image(tag, config=config)
        for i, (lname, diff) in enumerate(zip(e["Layers"], ids)):
            img.layers.append(Layer(f"layer {i + 1} ({lname})",
                                    (lambda lname=lname: CheckedReader(self.member(lname, "layer"),
                                                                       f"layer {lname}")), diff))
        return img


# ---- one tar layer ------------------------------------------------------------------------------------
def tar_image(path, stdin=None):
    if path == "-":
        src = stdin
        what = "standard input"
    else:
        try:
            src = open(path, "rb")
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{path}: a directory (an OCI layout is oci:DIR)") from None
        what = path
    return Image(None, [Layer(what, lambda: CheckedReader(src, what))])


def open_source(text, stdin=None):
    """SOURCE -> (kind, path, [Image])."""
    kind, path, ref = parse_source(text)
    if kind == "oci":
        return kind, path, oci_images(path, ref)
    if kind == "docker-archive":
        return kind, path, DockerArchive(path).images(ref)
    return kind, path, [tar_image(path, stdin)]
