"""Registry benchmark (issue 12): ctrfs pull/push against `skopeo copy`, side by side in one
run, through one real docker-registry with a counting proxy in front of it (both tools go
through the same proxy, so bytes are counted the same way and both pay its cost).

- layered pull: pull C onto a device that holds B, against skopeo copying C into an OCI
  layout that holds B's blobs (it fetches only what B lacks, as ctrfs does);
- push: C from a device to an empty registry, against `skopeo copy oci:CORPUS:C docker://`.

Bytes are HTTP body bytes (answers for a pull, requests for a push); seconds are the wall
time of the whole process.  Usage: .venv/bin/python bench/registry.py [--json FILE]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

from ctrfs.testing import registry as reg  # noqa: E402
from ctrfs.testing.proxy import FaultProxy  # noqa: E402

DEVICE_SIZE = "3G"


def tool(name):
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "bin", name)
    return here if os.path.exists(here) else B.which(name)


def measured(proxy, cmd, direction):
    proxy.clear()
    seconds = B.timed(cmd)
    nbytes = proxy.bytes_sent() if direction == "down" else proxy.bytes_received()
    return {"seconds": round(seconds, 3), "bytes": nbytes}


def bench(work, scratch):
    oci = B.corpus_paths(work)["oci"]
    ctrfs, mkfs = tool("ctrfs"), tool("mkfs.ctrfs")
    out = {}
    with reg.running(os.path.join(scratch, "registry")) as r, FaultProxy(r.host) as proxy:
        for tag in "BC":
            B.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{oci}:{tag}",
                   f"docker://{r.host}/corpus/img:{tag}"])
        src = lambda tag: f"docker://{proxy.host}/corpus/img:{tag}"   # noqa: E731
        insecure = "--tls-verify=false"

        # layered pull: C onto B
        dev = os.path.join(scratch, "dev.img")
        B.run([mkfs, "-q", "-s", DEVICE_SIZE, dev])
        B.run([ctrfs, "pull", "-q", dev, src("B"), insecure, "--name", "b:1"])
        out["pull C onto B: ctrfs"] = measured(proxy, [ctrfs, "pull", "-q", dev, src("C"), insecure,
                                                       "--name", "c:1"], "down")
        layout = os.path.join(scratch, "skopeo-oci")
        os.mkdir(layout)
        B.run(["skopeo", "copy", "-q", "--src-tls-verify=false", src("B"), f"oci:{layout}:B"])
        out["pull C onto B: skopeo"] = measured(proxy, ["skopeo", "copy", "-q", "--src-tls-verify=false",
                                                        src("C"), f"oci:{layout}:C"], "down")

    # push of C to an empty registry (a second one: the first has C's blobs already)
    for who in ("ctrfs", "skopeo"):
        with reg.running(os.path.join(scratch, f"registry-{who}")) as r, FaultProxy(r.host) as proxy:
            dest = f"docker://{proxy.host}/push/c:C"
            cmd = [ctrfs, "push", "-q", dev, "c:1", dest, "--tls-verify=false"] if who == "ctrfs" else \
                ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{oci}:C", dest]
            out[f"push C: {who}"] = measured(proxy, cmd, "up")
    return out


def table(res):
    rows = ["| what | skopeo copy | ctrfs | bytes ratio | seconds ratio |", "|---|---|---|---|---|"]
    for what in ("pull C onto B", "push C"):
        p, c = res[f"{what}: skopeo"], res[f"{what}: ctrfs"]
        rows.append(f"| {what} | {p['bytes'] / B.MB:.1f} MB, {p['seconds']:.2f} s | "
                    f"{c['bytes'] / B.MB:.1f} MB, {c['seconds']:.2f} s | "
                    f"{c['bytes'] / p['bytes']:.2f}x | {c['seconds'] / p['seconds']:.2f}x |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="the corpus dir (bench/README.md)")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    if not B.corpus_complete(args.work):
        sys.exit("the corpus is not complete: run bench/corpus.py first")
    scratch = tempfile.mkdtemp(prefix="ctrfs-bench-registry-", dir="/var/tmp")
    try:
        load = os.getloadavg()
        res = bench(args.work, scratch)
        res["loadavg"] = {"before": load, "after": os.getloadavg()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(table(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
