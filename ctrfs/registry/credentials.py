"""Registry credentials from where podman, skopeo and docker keep them
(containers-auth.json(5)): `--creds USER[:PASSWORD]`, then `--authfile`, else
$REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json,
~/.config/containers/auth.json and ~/.docker/config.json, in that order; the first entry
for the registry wins.  Entries are looked up by `HOST/REPO` prefixes, longest first,
then `HOST` (also written `https://HOST` or docker's `https://HOST/v1/`).  Credential
helpers (`credHelpers`, `credsStore`) are not run."""
import base64
import binascii
import json
import os

from ..errors import UsageError


def auth_files(authfile=None):
    if authfile:
        return [authfile]
    if os.environ.get("REGISTRY_AUTH_FILE"):
        return [os.environ["REGISTRY_AUTH_FILE"]]
    out = []
    if os.environ.get("XDG_RUNTIME_DIR"):
        out.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    home = os.path.expanduser("~")
    out.append(os.path.join(home, ".config", "containers", "auth.json"))
    out.append(os.path.join(home, ".docker", "config.json"))
    return out


def _keys(host, repo):
    parts = repo.split("/")
    keys = [f"{host}/{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1)]
    return keys + [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/"]


def _entry(value, path):
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("auth"), str) and value["auth"]:
        try:
            user, sep, password = base64.b64decode(value["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(f"{path}: an auth entry that is not base64 of USER:PASSWORD") from None
        if sep:
            return user, password
    if isinstance(value.get("username"), str) and isinstance(value.get("password"), str):
        return value["username"], value["password"]
    return None


def lookup(host, repo, *, creds=None, authfile=None):
    """(user, password) or None."""
    if creds is not None:
        user, _sep, password = creds.partition(":")
        if not user:
            raise UsageError("--creds needs USER[:PASSWORD]")
        return user, password
    for path in auth_files(authfile):
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read(1 << 20))
        except FileNotFoundError:
            if path == authfile:
                raise UsageError(f"{path}: no such auth file") from None
            continue
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: not a JSON auth file ({exc})") from None
        auths = doc.get("auths") if isinstance(doc, dict) else None
        if not isinstance(auths, dict):
            continue
        for key in _keys(host, repo):
            found = _entry(auths.get(key), path)
            if found:
                return found
    return None
