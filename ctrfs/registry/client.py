"""The OCI distribution API over HTTP(S), with requests: the /v2/ ping, the auth the
registry's challenge asks for (ctrfs/registry/auth.py), retries with backoff on 429/5xx
and dropped connections, manifests (OCI and Docker schema 2, images and indexes) and
blobs: streamed reads that pick up where a dropped connection left them (Range),
HEAD-before-upload, cross-repository mounts and POST-then-PUT uploads.

Everything a registry serves is checked by the caller against a digest (streams.py's
CheckedReader); this module only moves bytes and turns refusals into RegistryError."""
import hashlib
import json
import os
import re
import tempfile
import time
import urllib.parse

import requests
import urllib3

from .. import __version__
from ..errors import BadImageError, RegistryError
from . import auth

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT_MANIFESTS = ", ".join((MT_OCI_MANIFEST, MT_OCI_INDEX, MT_DOCKER_MANIFEST, MT_DOCKER_LIST))
MANIFEST_MAX = 4 << 20         # what distribution accepts; a bigger one is refused unread
RETRY_STATUS = frozenset((429, 500, 502, 503, 504))
TRIES = 5
BACKOFF = 0.2                  # seconds before the first retry, doubled for each next one
BACKOFF_MAX = 5.0
TIMEOUT = 60
READ = 1 << 20
CERTS_D = ("/etc/containers/certs.d", "/etc/docker/certs.d")


def _dropped():
    return (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError, ConnectionError)


def _error_text(resp):
    """The first error of a distribution error body ('MANIFEST_UNKNOWN: manifest unknown'),
    else the HTTP status."""
    try:
        errs = resp.json().get("errors")
        e = errs[0]
        return f"{e.get('code', resp.status_code)}: {' '.join(str(e.get('message', '')).split())}"[:300]
    except (ValueError, AttributeError, IndexError, TypeError, KeyError):
        return f"HTTP {resp.status_code} {resp.reason or ''}".strip()


def tls_settings(host, tls_verify, cert_dir):
    """(verify, client cert) for requests: a certs.d-style directory (CA *.crt files, a
    client *.cert/*.key pair), the one for HOST under /etc/containers/certs.d or
    /etc/docker/certs.d when none is given, else the system's CAs."""
    if not tls_verify:
        return False, None
    dirs = [cert_dir] if cert_dir else [os.path.join(d, host) for d in CERTS_D]
    for d in dirs:
        if not os.path.isdir(d):
            if cert_dir:
                raise RegistryError(f"--cert-dir {cert_dir}: not a directory")
            continue
        names = sorted(os.listdir(d))
        cas = [os.path.join(d, n) for n in names if n.endswith(".crt")]
        certs = [n for n in names if n.endswith(".cert")]
        client = None
        if certs:
            key = os.path.join(d, certs[0][:-5] + ".key")
            client = (os.path.join(d, certs[0]), key) if os.path.exists(key) else None
        if not cas:
            return True, client
        bundle = tempfile.NamedTemporaryFile("wb", prefix="ctrfs-ca-", suffix=".pem", delete=False)
        with bundle:
            for p in cas:
                with open(p, "rb") as f:
                    bundle.write(f.read() + b"\n")
        return bundle.name, client
    return True, None


class Client:
    """One registry host; repositories are named per call."""

    def __init__(self, host, *, tls_verify=True, cert_dir=None, credentials=None, tries=TRIES):
        self.host = host
        self.tls_verify = tls_verify
        self.verify, cert = tls_settings(host, tls_verify, cert_dir)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"ctrfs/{__version__}"
        self.session.cert = cert
        self.credentials = credentials
        self.tries = tries
        self.base = None
        self.challenge = (None, {})
        self.tokens = {}
        self.sent = self.received = 0

    def close(self):
        self.session.close()
        if isinstance(self.verify, str):
            os.unlink(self.verify)

    # ---- requests ------------------------------------------------------------------------
    def ping(self):
        """GET /v2/: learn the scheme (https; plain http too with --tls-verify=false) and
        the auth challenge."""
        schemes = ("https", "http") if not self.tls_verify else ("https",)
        last = None
        for scheme in schemes:
            url = f"{scheme}://{self.host}/v2/"
            try:       # no retries here: nothing listening is said at once
                resp = self.session.get(url, timeout=TIMEOUT, verify=self.verify)
            except requests.exceptions.SSLError as exc:
                last = RegistryError(f"{self.host}: TLS: {_short_exc(exc)}")
                continue
            except _dropped() as exc:
                last = RegistryError(f"{self.host}: {_short_exc(exc)}")
                continue
            if resp.status_code == 401:
                self.challenge = auth.parse_challenge(resp.headers.get("WWW-Authenticate"))
            elif resp.status_code != 200:
                raise RegistryError(f"{self.host}: not a registry (GET /v2/: HTTP {resp.status_code})")
            self.base = f"{scheme}://{self.host}"
            return
        raise last

    def _retrying(self, send):
        """send() again after a dropped connection or a 429/5xx, with backoff."""
        delay = BACKOFF
        for attempt in range(self.tries):
            try:
                resp = send()
            except requests.exceptions.SSLError:
                raise
            except _dropped() as exc:
                if attempt == self.tries - 1:
                    raise RegistryError(f"{self.host}: {_short_exc(exc)}") from None
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.tries - 1:
                wait = _retry_after(resp.headers.get("Retry-After"), delay)
                resp.close()
                time.sleep(wait)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            return resp
        raise AssertionError("unreachable")

    def request(self, method, path, *, scope, headers=None, body=None, stream=False, what=""):
        """One API request, authorised as the challenge asks; body is bytes or a callable
        giving a fresh file object for each attempt."""
        if self.base is None:
            self.ping()
        url = path if path.startswith(("http://", "https://")) else self.base + path
        for again in (False, True):
            h = dict(headers or {})
            self._authorize(h, scope)

            def send(h=h):
                data = body() if callable(body) else body
                try:
                    return self.session.request(method, url, headers=h, data=data, stream=stream,
                                                timeout=TIMEOUT, verify=self.verify)
                finally:
                    if hasattr(data, "close"):
                        data.close()
            try:
                resp = self._retrying(send)
            except requests.exceptions.SSLError as exc:
                raise RegistryError(f"{self.host}: TLS: {_short_exc(exc)}") from None
            if resp.status_code == 401 and not again:
                self.challenge = auth.parse_challenge(resp.headers.get("WWW-Authenticate")) \
                    if resp.headers.get("WWW-Authenticate") else self.challenge
                self.tokens.pop(scope, None)
                if self.challenge[0] == "bearer" or (self.challenge[0] == "basic" and self.credentials):
                    resp.close()
                    continue
            if resp.status_code in (401, 403):
                resp.close()
                raise RegistryError(f"{self.host}: {what or path}: {resp.status_code}: "
                                    + ("credentials refused" if self.credentials or resp.status_code == 403
                                       else "credentials needed (--creds, or an auth file)"))
            return resp
        raise AssertionError("unreachable")

    def _authorize(self, headers, scope):
        scheme, params = self.challenge
        if scheme == "basic" and self.credentials:
            headers["Authorization"] = requests.auth._basic_auth_str(*self.credentials)
        elif scheme == "bearer":
            if scope not in self.tokens:
                self.tokens[scope] = auth.fetch_token(self.session, params, scope, self.credentials,
                                                      TIMEOUT, self.verify)
            headers["Authorization"] = f"Bearer {self.tokens[scope]}"

    # ---- manifests -----------------------------------------------------------------------
    def get_manifest(self, repo, ref):
        """(bytes, media type) of a manifest or index by tag or digest, verified against
        the digest asked for, or the Docker-Content-Digest the registry claims."""
        what = f"{self.host}/{repo}: manifest {ref}"
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", scope=_scope(repo, "pull"),
                            headers={"Accept": ACCEPT_MANIFESTS}, stream=True, what=f"manifest {ref}")
        with resp:
            if resp.status_code != 200:
                raise RegistryError(f"{what}: {_error_text(resp)}")
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MANIFEST_MAX:
                raise BadImageError(f"{what}: {length} bytes is more than the {MANIFEST_MAX} allowed")
            data = _read_limited(resp, MANIFEST_MAX, what)
            self.received += len(data)
        want = ref if ref.startswith("sha256:") else resp.headers.get("Docker-Content-Digest")
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if want and want.startswith("sha256:") and want != got:
            raise BadImageError(f"{what}: digest mismatch (got {got[:23]}..., want {want[:23]}...)")
        mt = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return data, mt, got

    def put_manifest(self, repo, tag, data, media_type):
        resp = self.request("PUT", f"/v2/{repo}/manifests/{tag}", scope=_scope(repo, "pull,push"),
                            headers={"Content-Type": media_type}, body=data, what=f"manifest {tag}")
        with resp:
            if resp.status_code not in (200, 201):
                raise RegistryError(f"{self.host}/{repo}: manifest {tag} refused: {_error_text(resp)}")
            self.sent += len(data)
            return resp.headers.get("Docker-Content-Digest")

    def tags(self, repo):
        """The repository's tags ([] for a repository the registry does not know)."""
        resp = self.request("GET", f"/v2/{repo}/tags/list", scope=_scope(repo, "pull"), what="tags")
        with resp:
            if resp.status_code == 404:
                return []
            if resp.status_code != 200:
                raise RegistryError(f"{self.host}/{repo}: tags: {_error_text(resp)}")
            tags = parse_json(_read_limited(resp, MANIFEST_MAX, f"{self.host}/{repo}: tags"), "tags").get("tags")
        return [t for t in tags or [] if isinstance(t, str)]

    # ---- blobs ---------------------------------------------------------------------------
    def blob_response(self, repo, digest, offset=0, end=None):
        """GET of a blob, from byte `offset` to `end` (exclusive; None: to its end)."""
        headers = {"Range": f"bytes={offset}-{'' if end is None else end - 1}"} if offset or end else {}
        resp = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=_scope(repo, "pull"),
                            headers=headers, stream=True, what=f"blob {digest[:19]}...")
        if resp.status_code not in (200, 206):
            text = _error_text(resp)
            resp.close()
            raise RegistryError(f"{self.host}/{repo}: blob {digest[:19]}...: {text}")
        return resp

    def open_blob(self, repo, digest, start=0, end=None):
        """A file-like reader of a blob (or of bytes start..end of it) that resumes after a
        dropped connection."""
        return BlobBody(self, repo, digest, start, end)

    def blob_exists(self, repo, digest):
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=_scope(repo, "pull,push"))
        resp.close()
        if resp.status_code not in (200, 404):
            raise RegistryError(f"{self.host}/{repo}: HEAD blob {digest[:19]}...: HTTP {resp.status_code}")
        return resp.status_code == 200

    def mount_blob(self, repo, digest, from_repo):
        """Cross-repository mount: True if the registry linked the blob from from_repo."""
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}",
                            scope=_scope(repo, "pull,push") + " " + _scope(from_repo, "pull"))
        resp.close()
        if resp.status_code == 201:
            return True
        if resp.status_code == 202:            # not mounted: an upload was opened instead; drop it
            loc = resp.headers.get("Location")
            if loc:
                self.request("DELETE", urllib.parse.urljoin(self.base + "/", loc),
                             scope=_scope(repo, "pull,push")).close()
            return False
        raise RegistryError(f"{self.host}/{repo}: mount of {digest[:19]}... refused: HTTP {resp.status_code}")

    def upload_blob(self, repo, digest, path):
        """POST an upload, then PUT the whole file with its digest (monolithic); a session
        the registry lost on the way is started again."""
        size = os.path.getsize(path)
        for attempt in range(self.tries):
            resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=_scope(repo, "pull,push"),
                                what="blob upload")
            with resp:
                if resp.status_code != 202 or not resp.headers.get("Location"):
                    raise RegistryError(f"{self.host}/{repo}: upload refused: {_error_text(resp)}")
                loc = urllib.parse.urljoin(self.base + "/", resp.headers["Location"])
            sep = "&" if "?" in loc else "?"
            resp = self.request("PUT", f"{loc}{sep}digest={digest}", scope=_scope(repo, "pull,push"),
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(size)},
                                body=lambda: open(path, "rb"), what=f"blob {digest[:19]}...")
            with resp:
                if resp.status_code == 201:
                    self.sent += size
                    return size
                if resp.status_code == 404 and attempt < self.tries - 1:
                    continue                      # BLOB_UPLOAD_UNKNOWN: the session is gone
                raise RegistryError(f"{self.host}/{repo}: blob {digest[:19]}... refused: {_error_text(resp)}")
        raise AssertionError("unreachable")


class BlobBody:
    """The `raw` of a CheckedReader: a blob's bytes (or bytes start..end of it); after a
    dropped connection it asks again from where it stopped (Range), up to the client's
    tries."""

    def __init__(self, client, repo, digest, start=0, end=None):
        self.client, self.repo, self.digest = client, repo, digest
        self.pos, self.end = start, end
        self.resumes = 0
        self._reopen()

    def read(self, n=READ):
        if self.end is not None:
            n = min(n, self.end - self.pos)
            if n <= 0:
                return b""
        delay = BACKOFF
        while True:
            try:
                data = self.resp.raw.read(n, decode_content=False)
                self.pos += len(data)
                self.client.received += len(data)
                return data
            except _dropped() as exc:
                self.resp.close()
                self.resumes += 1
                if self.resumes >= self.client.tries:
                    raise RegistryError(f"{self.client.host}/{self.repo}: blob {self.digest[:19]}...: "
                                        f"connection lost {self.resumes} times ({_short_exc(exc)})") from None
                time.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                self._reopen()

    def _reopen(self):
        resp = self.client.blob_response(self.repo, self.digest, self.pos, self.end)
        if resp.status_code == 200:              # the registry ignored Range: skip what we have
            skip = self.pos
            while skip:
                chunk = resp.raw.read(min(skip, READ), decode_content=False)
                if not chunk:
                    break
                skip -= len(chunk)
        elif not resp.headers.get("Content-Range", "").startswith(f"bytes {self.pos}-"):
            resp.close()
            raise BadImageError(f"{self.client.host}/{self.repo}: blob {self.digest[:19]}...: "
                                f"asked for bytes {self.pos}- and got {resp.headers.get('Content-Range')!r}")
        self.resp = resp

    def close(self):
        self.resp.close()


def _scope(repo, actions):
    return f"repository:{repo}:{actions}"


def _retry_after(value, default):
    try:
        return min(max(float(value), 0.0), BACKOFF_MAX)
    except (TypeError, ValueError):
        return default


def _short_exc(exc):
    """The reason inside requests' and urllib3's nested messages ('Connection refused')."""
    text = " ".join(str(exc).split())
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1).strip()
    m = re.search(r"\[SSL: [A-Z_]+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1).strip()
    for marker in ("Caused by ", "Max retries exceeded"):
        if marker in text and len(text) > 200:
            text = text[text.index(marker):]
    return text[:240]


def _read_limited(resp, limit, what):
    parts, n = [], 0
    try:
        for chunk in resp.iter_content(READ):
            n += len(chunk)
            if n > limit:
                raise BadImageError(f"{what}: more than the {limit} bytes allowed")
            parts.append(chunk)
    except _dropped() as exc:
        raise RegistryError(f"{what}: {_short_exc(exc)}") from None
    return b"".join(parts)


def parse_json(data, what):
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadImageError(f"{what}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise BadImageError(f"{what}: not a JSON object")
    return doc
