"""Property tests of what the registry client parses from users and registries: remote
references, WWW-Authenticate challenges, auth-file entries.  Arbitrary input gives a value
or the one error the CLI turns into a line, never another exception."""
import base64
import json

from hypothesis import example, given
from hypothesis import strategies as st

from ctrfs.errors import UsageError
from ctrfs.registry import credentials
from ctrfs.registry.auth import parse_challenge
from ctrfs.registry.reference import parse_remote

component = st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+)?", fullmatch=True).filter(lambda c: len(c) < 20)
host = st.one_of(st.just("localhost"), st.from_regex(r"[a-z0-9]{1,10}\.[a-z]{2,5}", fullmatch=True),
                 st.builds(lambda p: f"127.0.0.1:{p}", st.integers(1, 65535)))
tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)


@given(host, st.lists(component, min_size=1, max_size=3), st.one_of(st.none(), tag), st.booleans())
def test_remote_round_trip(h, parts, t, transport):
    text = f"{'docker://' if transport else ''}{h}/{'/'.join(parts)}" + (f":{t}" if t else "")
    r = parse_remote(text)
    assert (r.host, r.repo, r.tag) == (h, "/".join(parts), t or "latest")
    assert parse_remote(str(r)) == r


@given(st.text(max_size=80))
@example("busybox:1")
@example("docker://")
@example("127.0.0.1:5000")
def test_remote_totality(text):
    try:
        r = parse_remote(text)
    except UsageError:
        return
    assert r.host and r.repo and r.tag


@given(st.dictionaries(st.sampled_from(["realm", "service", "scope", "error"]),
                       st.text(st.characters(blacklist_characters='"\\', blacklist_categories=("Cs", "Cc")),
                               max_size=30), max_size=4),
       st.sampled_from(["Bearer", "bearer", "Basic"]))
def test_challenge_round_trip(params, scheme):
    header = scheme + " " + ",".join(f'{k}="{v}"' for k, v in params.items())
    got_scheme, got = parse_challenge(header)
    assert got_scheme == scheme.lower() and got == params


@given(st.text(max_size=120))
def test_challenge_totality(header):
    scheme, params = parse_challenge(header)
    assert scheme is None or isinstance(scheme, str)
    assert isinstance(params, dict)


@given(st.one_of(st.binary(max_size=60), st.builds(lambda d: json.dumps(d).encode(), st.recursive(
    st.one_of(st.none(), st.text(max_size=10), st.integers()),
    lambda inner: st.dictionaries(st.text(max_size=12), inner, max_size=3), max_leaves=8))))
@example(b'{"auths": {"h.example": {"auth": "!!"}}}')
@example(b'{"auths": {"h.example": {"auth": "dXNlcg=="}}}')
def test_auth_file_totality(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("auth") / "auth.json"
    path.write_bytes(raw)
    try:
        found = credentials.lookup("h.example", "a/b", authfile=str(path))
    except UsageError:
        return
    assert found is None or (isinstance(found[0], str) and isinstance(found[1], str))


def test_auth_file_longest_repository_prefix_wins(tmp_path):
    def enc(u):
        return base64.b64encode(f"{u}:pw".encode()).decode()
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {"h.example": {"auth": enc("host")},
                                          "h.example/a": {"auth": enc("a")},
                                          "h.example/a/b": {"auth": enc("ab")}}}))
    assert credentials.lookup("h.example", "a/b/c", authfile=str(path)) == ("ab", "pw")
    assert credentials.lookup("h.example", "a/x", authfile=str(path)) == ("a", "pw")
    assert credentials.lookup("h.example", "z", authfile=str(path)) == ("host", "pw")
    assert credentials.lookup("other.example", "z", authfile=str(path)) is None
