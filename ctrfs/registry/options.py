"""The options `ctrfs pull` and `ctrfs push` share (skopeo's and podman's names), and the
client they make of them."""
from ..errors import UsageError
from . import credentials
from .client import Client


def tls_flag(text):
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise UsageError(f"--tls-verify={text}: say true or false")


def add_remote_options(s):
    s.add_argument("--tls-verify", type=tls_flag, default=True, metavar="BOOL",
                   help="check the registry's certificate (default true); false also allows plain HTTP")
    s.add_argument("--cert-dir", metavar="DIR",
                   help="CA certificates (*.crt) and a client pair (*.cert, *.key) for the registry "
                        "(default /etc/containers/certs.d/HOST or /etc/docker/certs.d/HOST)")
    s.add_argument("--creds", metavar="USER[:PASSWORD]", help="credentials for the registry")
    s.add_argument("--authfile", metavar="FILE",
                   help="auth file (default $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json, "
                        "~/.docker/config.json)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")


def open_client(args, remote):
    creds = credentials.lookup(remote.host, remote.repo, creds=args.creds, authfile=args.authfile)
    return Client(remote.host, tls_verify=args.tls_verify, cert_dir=args.cert_dir, credentials=creds)
