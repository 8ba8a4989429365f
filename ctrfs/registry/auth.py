"""Answering a registry's `WWW-Authenticate` challenge (the distribution token spec):
`Basic` sends the credentials on every request; `Bearer realm=...,service=...,scope=...`
trades them (or nothing, for anonymous pulls) at the realm for a token per scope."""
import re

from ..errors import RegistryError

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header):
    """'Bearer realm="https://a/token",service="r"' -> ('bearer', {'realm': ..., ...})."""
    if not header:
        return None, {}
    scheme, _sep, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


def fetch_token(session, params, scope, credentials, timeout, verify):
    """A bearer token for scope from the challenge's realm (basic auth to the realm when
    there are credentials, as docker and podman do)."""
    realm = params.get("realm")
    if not realm or not realm.startswith(("https://", "http://")):
        raise RegistryError(f"the registry asks for a bearer token but names no usable realm ({realm!r})")
    query = {"service": params["service"]} if params.get("service") else {}
    if scope:
        query["scope"] = scope
    try:
        resp = session.get(realm, params=query, auth=credentials, timeout=timeout, verify=verify)
    except OSError as exc:
        raise RegistryError(f"token server {realm}: {exc}") from None
    if resp.status_code in (401, 403):
        raise RegistryError(f"token server {realm}: {resp.status_code}: "
                            + ("credentials refused" if credentials else "credentials needed (--creds or an auth file)"))
    if resp.status_code != 200:
        raise RegistryError(f"token server {realm}: HTTP {resp.status_code}")
    try:
        doc = resp.json()
    except ValueError:
        raise RegistryError(f"token server {realm}: not JSON") from None
    token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryError(f"token server {realm}: no token in its answer")
    return token
