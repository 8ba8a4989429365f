"""Helpers of the registry tests (a uniquely named module): skopeo to and from a
registry, ctrfs pull/push with the test registry's options."""
from ocitree import ctrfs, sh


def tls_args(r, prefix=""):
    """skopeo's options for registry r: plain HTTP, or its CA and credentials."""
    flag = f"--{prefix}tls-verify" if prefix else "--tls-verify"
    if not r.tls:
        return [f"{flag}=false"]
    cert = f"--{prefix}cert-dir" if prefix else "--cert-dir"
    creds = f"--{prefix}creds" if prefix else "--creds"
    return [f"{cert}={r.cert_dir}", f"{creds}={r.user}:{r.password}"]


def skopeo_push(layout_dir, tag, r, repo):
    sh("skopeo", "copy", "-q", *tls_args(r, "dest-"), f"oci:{layout_dir}:{tag}", f"docker://{r.host}/{repo}")


def skopeo_pull(r, repo, dest, tag):
    sh("skopeo", "copy", "-q", *tls_args(r, "src-"), f"docker://{r.host}/{repo}", f"oci:{dest}:{tag}")


def ctrfs_args(r):
    if not r.tls:
        return ["--tls-verify=false"]
    return ["--cert-dir", r.cert_dir, "--creds", f"{r.user}:{r.password}"]


def pull(img, r, repo, *extra, host=None):
    return ctrfs("pull", img, f"docker://{host or r.host}/{repo}", *ctrfs_args(r), *extra)


def push(img, name, r, repo, *extra, host=None):
    return ctrfs("push", img, name, f"docker://{host or r.host}/{repo}", *ctrfs_args(r), *extra)


def killed_while_stalled(proxy, cmd):
    """Run cmd until the proxy's stall fault holds an answer back, then kill -9 it."""
    import subprocess

    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert proxy.stalled.wait(60)
        proc.kill()
        proc.wait(30)
    finally:
        proxy.release.set()
