"""A real OCI distribution registry (Debian's `docker-registry`, distribution 2.x) for the
tests and the benchmarks: filesystem storage in a directory, `http.addr 127.0.0.1:0` so
runs never fight over a port (the port is read from the log), optionally htpasswd basic
auth and TLS with a certificate signed by a CA made here (cryptography)."""
import contextlib
import datetime
import ipaddress
import json
import os
import re
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

BINARY = "docker-registry"
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
START_TIMEOUT = 20.0


@dataclass
class Registry:
    host: str                 # "127.0.0.1:PORT"
    root: Path                # storage, config, log, certificates
    config: Path
    proc: subprocess.Popen
    tls: bool = False
    ca: Path | None = None    # the CA certificate (TLS only)
    cert_dir: Path | None = None   # a containers-style certs.d directory holding ca.crt
    user: str | None = None
    password: str | None = None

    @property
    def url(self):
        return ("https://" if self.tls else "http://") + self.host

    def log(self):
        return (self.root / "log.txt").read_bytes().decode(errors="replace")

    def blob_count(self):
        """How many blobs the registry stores (the storage driver's layout)."""
        blobs = self.root / "data/docker/registry/v2/blobs"
        return sum(1 for _ in blobs.glob("*/*/*/data")) if blobs.exists() else 0

    def garbage_collect(self):
        """`docker-registry garbage-collect` of the storage: its output."""
        proc = subprocess.run([BINARY, "garbage-collect", str(self.config)], capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"garbage-collect failed: {proc.stdout} {proc.stderr}")
        return proc.stdout + proc.stderr


def _config(root, tls_files=None, htpasswd=None, auth=None):
    cfg = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")},
                    "delete": {"enabled": True}, "cache": {"blobdescriptor": "inmemory"}},
        "http": {"addr": "127.0.0.1:0", "secret": "ctrfs-tests",
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
    }
    if tls_files:
        cfg["http"]["tls"] = {"certificate": str(tls_files[0]), "key": str(tls_files[1])}
    if htpasswd:
        cfg["auth"] = {"htpasswd": {"realm": "ctrfs-tests", "path": str(htpasswd)}}
    elif auth:
        cfg["auth"] = auth
    path = root / "config.yml"
    path.write_text(json.dumps(cfg, indent=1))      # JSON is YAML
    return path


def make_ca_and_cert(where, host_ip="127.0.0.1"):
    """A self-signed CA and a server certificate for host_ip signed by it:
    (ca.crt, server.crt, server.key) paths in `where`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ctrfs test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_ip)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host_ip))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    where = Path(where)
    where.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (where / "ca.crt").write_bytes(ca.public_bytes(pem))
    (where / "server.crt").write_bytes(cert.public_bytes(pem))
    (where / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return where / "ca.crt", where / "server.crt", where / "server.key"


def _wait_for_port(proc, log_path):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        m = LISTENING.search(log_path.read_bytes())
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"{BINARY} exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        time.sleep(0.01)
    raise RuntimeError(f"{BINARY} did not say where it listens: {log_path.read_text()[-2000:]}")


def start(root, *, tls=False, user=None, password=None, auth=None):
    """Start a registry storing under `root` (a new directory); stop it with stop().
    user/password: htpasswd basic auth; auth: another `auth` section (a token server's)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tls_files = make_ca_and_cert(root / "tls") if tls else None
    htpasswd = None
    if user is not None:
        htpasswd = root / "htpasswd"
        # crypt is deprecated, but glibc has bcrypt; cost 4 (16 rounds) keeps each request cheap
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        htpasswd.write_text(f"{user}:{hashed}\n")
    config = _config(root, tls_files and tls_files[1:], htpasswd, auth)
    log_path = root / "log.txt"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        port = _wait_for_port(proc, log_path)
    except BaseException:
        stop_process(proc)
        raise
    reg = Registry(f"127.0.0.1:{port}", root, config, proc, tls=tls, user=user, password=password)
    if tls:
        reg.ca = tls_files[0]
        reg.cert_dir = root / "certs.d"
        reg.cert_dir.mkdir()
        (reg.cert_dir / "ca.crt").write_bytes(reg.ca.read_bytes())
    return reg


def stop_process(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop(reg):
    stop_process(reg.proc)


@contextlib.contextmanager
def running(root, **kw):
    reg = start(root, **kw)
    try:
        yield reg
    finally:
        stop(reg)


def auth_file(path, host, user, password):
    """A containers-auth.json (also ~/.docker/config.json's shape) with one entry."""
    import base64
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"auths": {host: {"auth": token}}}))
    os.chmod(path, 0o600)
    return Path(path)
