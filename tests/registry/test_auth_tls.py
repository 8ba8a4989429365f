"""A registry with htpasswd basic auth behind TLS (a CA the test made): credentials from
--creds, REGISTRY_AUTH_FILE or ~/.docker/config.json, the CA from --cert-dir; missing or
wrong credentials and an unknown CA are one line and exit 3, nothing stored."""
import os

from ocitree import assert_same_tree, ctrfs, describe_dir, describe_image, fsck_clean, image_names, mkfs
from regrun import skopeo_push
from toolrun import assert_error, assert_ok

from ctrfs.testing.registry import auth_file

EXIT_REGISTRY = 3


def test_push_and_pull_with_basic_auth_over_tls(secure_registry, layout, tmp_path):
    r = secure_registry
    img = mkfs(tmp_path / "fs.img")
    assert_ok(ctrfs("import", img, f"oci:{layout.dir}:app", "--name", "app:1", "-q"))
    creds = ["--cert-dir", r.cert_dir, "--creds", f"{r.user}:{r.password}"]
    assert_ok(ctrfs("push", img, "app:1", f"docker://{r.host}/sec/app:1", *creds))
    other = mkfs(tmp_path / "other.img")
    assert_ok(ctrfs("pull", other, f"{r.host}/sec/app:1", "--name", "got:1", *creds))
    assert_same_tree(describe_image(other, "got:1"), describe_dir(layout.unpack("app")))
    fsck_clean(other)


def test_credentials_from_auth_files(secure_registry, layout, tmp_path):
    r = secure_registry
    skopeo_push(layout.dir, "base", r, "sec/base:1")
    img = mkfs(tmp_path / "fs.img")
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR")}
    authfile = auth_file(tmp_path / "auth.json", r.host, r.user, r.password)
    assert_ok(ctrfs("pull", img, f"{r.host}/sec/base:1", "--name", "a", "--cert-dir", r.cert_dir,
                    env=dict(env, REGISTRY_AUTH_FILE=str(authfile))))
    home = tmp_path / "home"
    auth_file(home / ".docker/config.json", r.host, r.user, r.password)
    assert_ok(ctrfs("pull", img, f"{r.host}/sec/base:1", "--name", "b", "--cert-dir", r.cert_dir,
                    env=dict(env, HOME=str(home))))
    xdg = tmp_path / "run"
    auth_file(xdg / "containers/auth.json", r.host, r.user, r.password)
    assert_ok(ctrfs("pull", img, f"{r.host}/sec/base:1", "--name", "c", "--cert-dir", r.cert_dir,
                    env=dict(env, HOME=str(tmp_path), XDG_RUNTIME_DIR=str(xdg))))
    assert {b"a:1", b"b:1", b"c:1"} <= set(image_names(img))


def test_refusals_are_one_line(secure_registry, layout, tmp_path):
    r = secure_registry
    skopeo_push(layout.dir, "base", r, "sec/base:1")
    img = mkfs(tmp_path / "fs.img")
    before = image_names(img)
    env = dict(os.environ, HOME=str(tmp_path), REGISTRY_AUTH_FILE=str(tmp_path / "none.json"))
    env.pop("XDG_RUNTIME_DIR", None)
    cases = [
        (["--cert-dir", r.cert_dir], "credentials needed"),
        (["--cert-dir", r.cert_dir, "--creds", f"{r.user}:wrong"], "credentials refused"),
        (["--creds", f"{r.user}:{r.password}"], "TLS"),            # the system CAs do not know ours
    ]
    for extra, fragment in cases:
        res = ctrfs("pull", img, f"{r.host}/sec/base:1", *extra, env=env)
        assert_error(res, EXIT_REGISTRY, fragment, r.host, prog="ctrfs")
    # --tls-verify=false talks to it anyway
    assert_ok(ctrfs("pull", img, f"{r.host}/sec/base:1", "--tls-verify=false", "--creds",
                    f"{r.user}:{r.password}", env=env))
    assert set(image_names(img)) - set(before) >= {f"{r.host}/sec/base:1".encode()}
    fsck_clean(img)


def test_bearer_tokens_from_a_token_server(token_registry, layout, tmp_path):
    r, tokens = token_registry
    img = mkfs(tmp_path / "fs.img")
    assert_ok(ctrfs("import", img, f"oci:{layout.dir}:app", "--name", "app:1", "-q"))
    creds = ["--tls-verify=false", "--creds", f"{tokens.user}:{tokens.password}"]
    assert_ok(ctrfs("push", img, "app:1", f"{r.host}/tok/app:1", *creds))
    assert ["repository:tok/app:pull,push"] in tokens.issued
    other = mkfs(tmp_path / "other.img")
    assert_ok(ctrfs("pull", other, f"{r.host}/tok/app:1", "--name", "t:1", *creds))
    assert ["repository:tok/app:pull"] in tokens.issued
    assert_same_tree(describe_image(other, "t:1"), describe_dir(layout.unpack("app")))
    res = ctrfs("pull", other, f"{r.host}/tok/app:1", "--tls-verify=false", "--creds", "who:nope")
    assert_error(res, EXIT_REGISTRY, "token server", "credentials refused", prog="ctrfs")
    assert tokens.refused >= 1
