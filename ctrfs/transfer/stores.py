"""Where transferred images live: a registry repository (through the registry client) or a
plain directory (`dir:PATH`, an OCI image layout: blobs/sha256/HEX and index.json's tags),
behind one small interface: has / put / get a blob or a byte range of it, list tags, get /
put a manifest.  get() verifies the blob's sha256 and size before anything is returned;
get_range() only its length (the parts it holds carry their own sha256)."""
import hashlib
import json
import os
import tempfile

from ..errors import BadImageError, RegistryError, UsageError
from ..oci.export import MT_MANIFEST, canonical_json
from ..oci.layout import REF_NAME
from ..oci.streams import read_all

MANIFEST_MAX = 4 << 20


class RegistryStore:
    def __init__(self, client, repo):
        self.client, self.repo = client, repo

    def has(self, digest):
        return self.client.blob_exists(self.repo, digest)

    def put(self, digest, path):
        self.client.upload_blob(self.repo, digest, path)

    def get(self, digest, size, limit):
        body = self.client.open_blob(self.repo, digest)
        try:
            data = read_all(body, f"blob {digest[:19]}...", digest, size, limit)
        finally:
            body.close()
        return data

    def get_range(self, digest, start, length):
        body = self.client.open_blob(self.repo, digest, start, start + length)
        try:
            data = read_exactly(body, length, f"blob {digest[:19]}...")
        finally:
            body.close()
        return data

    def tags(self):
        return self.client.tags(self.repo)

    def manifest(self, tag):
        return self.client.get_manifest(self.repo, tag)[0]

    def put_manifest(self, tag, data):
        self.client.put_manifest(self.repo, tag, data, MT_MANIFEST)


class DirStore:
    """An OCI image layout as a remote, made on the first push."""

    def __init__(self, path, create=False):
        self.path = path
        self.blobs = os.path.join(path, "blobs", "sha256")
        if not os.path.isdir(self.blobs):
            if not create:
                raise UsageError(f"{path}: not a ctrfs transfer directory (no blobs/sha256)")
            os.makedirs(self.blobs)
            with open(os.path.join(path, "oci-layout"), "wb") as f:
                f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
            self._write_index({"schemaVersion": 2, "manifests": []})

    def _blob(self, digest):
        return os.path.join(self.blobs, digest.split(":", 1)[1])

    def has(self, digest):
        return os.path.exists(self._blob(digest))

    def put(self, digest, path):
        tmp = self._blob(digest) + ".new"
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self._blob(digest))

    def _open(self, digest):
        try:
            return open(self._blob(digest), "rb")
        except FileNotFoundError:
            raise BadImageError(f"{self.path}: blob {digest[:19]}... is missing") from None

    def get(self, digest, size, limit):
        with self._open(digest) as f:
            data = read_all(f, f"{self.path}: blob {digest[:19]}...", digest, size, limit)
        return data

    def get_range(self, digest, start, length):
        with self._open(digest) as f:
            f.seek(start)
            data = read_exactly(f, length, f"{self.path}: blob {digest[:19]}...")
        return data

    def _index(self):
        try:
            with open(os.path.join(self.path, "index.json"), "rb") as f:
                doc = json.loads(f.read(MANIFEST_MAX))
        except (OSError, ValueError) as exc:
            raise BadImageError(f"{self.path}/index.json: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
            raise BadImageError(f"{self.path}/index.json: no manifests")
        return doc

    def _write_index(self, doc):
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".index-")
        with os.fdopen(fd, "wb") as f:
            f.write(canonical_json(doc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.path, "index.json"))

    def tags(self):
        return [(d.get("annotations") or {}).get(REF_NAME) for d in self._index()["manifests"]
                if isinstance(d, dict) and (d.get("annotations") or {}).get(REF_NAME)]

    def manifest(self, tag):
        for d in self._index()["manifests"]:
            if isinstance(d, dict) and (d.get("annotations") or {}).get(REF_NAME) == tag:
                if not isinstance(d.get("digest"), str) or not isinstance(d.get("size"), int):
                    raise BadImageError(f"{self.path}/index.json: malformed entry for {tag!r}")
                return self.get(d["digest"], d["size"], MANIFEST_MAX)
        raise RegistryError(f"{self.path}: no image tagged {tag!r}")

    def put_manifest(self, tag, data):
        """The manifest blob, then index.json naming it: the tag appears last."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with tempfile.NamedTemporaryFile(dir=self.path, delete=False) as f:
            f.write(data)
        self.put(digest, f.name)
        os.unlink(f.name)
        doc = self._index()
        doc["manifests"] = [d for d in doc["manifests"]
                            if (d.get("annotations") or {}).get(REF_NAME) != tag]
        doc["manifests"].append({"mediaType": MT_MANIFEST, "digest": digest, "size": len(data),
                                 "annotations": {REF_NAME: tag}})
        self._write_index(doc)


def read_exactly(raw, length, what):
    parts, n = [], 0
    while n < length and (chunk := raw.read(min(1 << 20, length - n))):
        parts.append(chunk)
        n += len(chunk)
    if n != length:
        raise BadImageError(f"{what}: {n} bytes where {length} were asked for")
    return b"".join(parts)
