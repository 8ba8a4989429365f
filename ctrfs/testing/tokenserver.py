"""A token server for a registry with `auth: token` (the distribution token spec), for
the tests: it checks basic credentials and answers with a JWT (ES256, its certificate
in the x5c header, the registry trusting that certificate) granting the scope asked for.
Counts the tokens it issued."""
import base64
import datetime
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from .httpd import BackgroundServer

ISSUER = "ctrfs-test-issuer"
SERVICE = "ctrfs-test-registry"


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer(BackgroundServer):
    def __init__(self, where, user, password):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.user, self.password = user, password
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ctrfs test token signer")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .sign(self.key, hashes.SHA256()))
        self.bundle = Path(where) / "token-signer.pem"
        self.bundle.parent.mkdir(parents=True, exist_ok=True)
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.der = self.cert.public_bytes(serialization.Encoding.DER)
        self.issued = []              # scopes of the tokens given out
        self.refused = 0
        self.lock = threading.Lock()
        self._listen(_handler(self))
        self.realm = f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self):
        """The `auth` section of the registry's config."""
        return {"token": {"realm": self.realm, "service": SERVICE, "issuer": ISSUER,
                          "rootcertbundle": str(self.bundle)}}

    def token(self, scopes):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":") if scope.count(":") == 2 else (None, None, None)
            if kind == "repository":
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"alg": "ES256", "typ": "JWT", "x5c": [base64.b64encode(self.der).decode()]}
        claims = {"iss": ISSUER, "sub": self.user, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
        return signing + "." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _handler(ts):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)
            expected = "Basic " + base64.b64encode(f"{ts.user}:{ts.password}".encode()).decode()
            if url.path != "/token" or self.headers.get("Authorization") != expected:
                with ts.lock:
                    ts.refused += 1
                self._answer(401, {"details": "credentials refused"})
                return
            scopes = [s for v in query.get("scope", []) for s in v.split(" ")]
            with ts.lock:
                ts.issued.append(scopes)
            self._answer(200, {"token": ts.token(scopes), "expires_in": 300})

        def _answer(self, status, doc):
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
