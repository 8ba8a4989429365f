"""Registry benchmark (issue 12): ctrfs pull/push against `skopeo copy`, side by side in one
run, through one real docker-registry with a counting proxy in front of it (both tools go
through the same proxy, so bytes are counted the same way and both pay its cost).

- layered pull: pull C onto a device that holds B, against skopeo copying C into an OCI
  layout that holds B's blobs (it fetches only C's top layer);
- rebuilt pull: B and C as single-layer images made separately (umoci raw add-layer of each
  tree's tar), so no layer digest is shared; skopeo must fetch all of C;
- both pulls also in ctrfs's file-level transfer (C pushed `--format ctrfs` from another
  device), which fetches only the file contents the device lacks; the reference for it is
  the file contents of C that B lacks, compressed in one stream (zstd -3 and gzip -6);
- push: C from a device to an empty registry, against `skopeo copy oci:CORPUS:C docker://`,
  as an OCI image and as the file-level transfer; and C pulled from a repository pushed back
  to it under a new tag, against skopeo copying that tag to another (both reuse the blobs).

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

        rebuilt = single_layer_images(work, scratch)
        for tag in "BC":
            B.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{rebuilt}:{tag}",
                   f"docker://{r.host}/rebuilt/img:{tag}"])
        rsrc = lambda tag: f"docker://{proxy.host}/rebuilt/img:{tag}"   # noqa: E731

        def device(label, *pulls):
            dev = os.path.join(scratch, f"{label}.img")
            B.run([mkfs, "-q", "-s", DEVICE_SIZE, dev])
            for ref, name in pulls:
                B.run([ctrfs, "pull", "-q", dev, ref, insecure, "--name", name])
            return dev

        # C as the file-level transfer, pushed from a device that has only C
        pusher = device("pusher", (src("C"), "c:1"))
        B.run([ctrfs, "push", "-q", pusher, "c:1", f"docker://{r.host}/xfer/img:C", "--format", "ctrfs",
               insecure])
        xfer = f"docker://{proxy.host}/xfer/img:C"

        # C back to the repository it was pulled from, under a new tag: its blobs are there
        out["push C back, new tag: ctrfs"] = measured(
            proxy, [ctrfs, "push", "-q", pusher, "c:1", f"docker://{proxy.host}/corpus/img:C2", insecure], "up")
        out["push C back, new tag: skopeo"] = measured(
            proxy, ["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", src("C"),
                    f"docker://{proxy.host}/corpus/img:C3"], "up")

        for case, source in (("layered", src), ("rebuilt", rsrc)):
            dev = device(case, (source("B"), "b:1"))
            out[f"{case} pull C onto B: ctrfs"] = measured(
                proxy, [ctrfs, "pull", "-q", dev, source("C"), insecure, "--name", "c:1"], "down")
            B.run([ctrfs, "rm", dev, "c:1"])
            B.run([ctrfs, "gc", "-q", dev])
            out[f"{case} pull C onto B: ctrfs transfer"] = measured(
                proxy, [ctrfs, "pull", "-q", dev, xfer, insecure, "--name", "c:2"], "down")
            os.unlink(dev)
            layout = os.path.join(scratch, f"skopeo-{case}")
            os.mkdir(layout)
            B.run(["skopeo", "copy", "-q", "--src-tls-verify=false", source("B"), f"oci:{layout}:B"])
            out[f"{case} pull C onto B: skopeo"] = measured(
                proxy, ["skopeo", "copy", "-q", "--src-tls-verify=false", source("C"), f"oci:{layout}:C"], "down")
            shutil.rmtree(layout)
        out["contents of C that B lacks"] = lacking_contents(B.corpus_paths(work)["tars"])

    # push of C to an empty registry (a second one: the first has C's blobs already)
    for who in ("ctrfs", "ctrfs transfer", "skopeo"):
        with reg.running(os.path.join(scratch, f"registry-{who}")) as r, FaultProxy(r.host) as proxy:
            dest = f"docker://{proxy.host}/push/c:C"
            cmd = {"ctrfs": [ctrfs, "push", "-q", pusher, "c:1", dest, "--tls-verify=false"],
                   "ctrfs transfer": [ctrfs, "push", "-q", pusher, "c:1", dest, "--tls-verify=false",
                                      "--format", "ctrfs"],
                   "skopeo": ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{oci}:C", dest]}[who]
            out[f"push C: {who}"] = measured(proxy, cmd, "up")
    return out


def single_layer_images(work, scratch):
    """An OCI layout with B and C each as one layer of its whole tree, made by umoci (the
    layers are kept in the corpus dir: gzip of 500 MB takes a while)."""
    layout = os.path.join(B.cache_dir(work, "bench-registry"), "rebuilt")
    marker = layout + ".done"
    tars = B.corpus_paths(work)["tars"]
    if B.fresh_marker(marker, tars["B"], tars["C"]):
        return layout
    shutil.rmtree(layout, ignore_errors=True)
    B.run(["umoci", "init", "--layout", layout])
    for tag in "BC":
        B.run(["umoci", "new", "--image", f"{layout}:{tag}"])
        B.run(["umoci", "raw", "add-layer", "--image", f"{layout}:{tag}", tars[tag]])
    open(marker, "w").close()
    return layout


def lacking_contents(tars):
    """The regular-file contents of C whose sha256 no file of B has, each once, compressed
    as one stream: what an ideal file-level pull of C onto B must move."""
    import gzip
    import hashlib
    import tarfile

    import zstandard

    def contents(path):
        with tarfile.open(path) as t:
            for m in t:
                if m.isreg():
                    data = t.extractfile(m).read()
                    yield hashlib.sha256(data).digest(), data

    have = {h for h, _d in contents(tars["B"])}
    raw, seen = [], set()
    for h, data in contents(tars["C"]):
        if h not in have and h not in seen:
            seen.add(h)
            raw.append(data)
    blob = b"".join(raw)
    return {"files": len(raw), "bytes": len(blob),
            "zstd -3": len(zstandard.ZstdCompressor(level=3).compress(blob)),
            "gzip -6": len(gzip.compress(blob, 6))}


def table(res):
    rows = ["| what | skopeo copy | ctrfs | bytes ratio | seconds ratio |", "|---|---|---|---|---|"]
    for what, hows in (("layered pull C onto B", ("ctrfs", "ctrfs transfer")),
                       ("rebuilt pull C onto B", ("ctrfs", "ctrfs transfer")),
                       ("push C", ("ctrfs", "ctrfs transfer")), ("push C back, new tag", ("ctrfs",))):
        p = res[f"{what}: skopeo"]
        for how in hows:
            c = res[f"{what}: {how}"]
            rows.append(f"| {what}, {how} | {p['bytes'] / B.MB:.3f} MB, {p['seconds']:.2f} s | "
                        f"{c['bytes'] / B.MB:.3f} MB, {c['seconds']:.2f} s | "
                        f"{c['bytes'] / max(p['bytes'], 1):.2f}x | {c['seconds'] / p['seconds']:.2f}x |")
    lack = res["contents of C that B lacks"]
    rows.append(f"\ncontents of C that B lacks: {lack['files']} files, {lack['bytes'] / B.MB:.1f} MB; "
                f"zstd -3 {lack['zstd -3'] / B.MB:.1f} MB, gzip -6 {lack['gzip -6'] / B.MB:.1f} MB")
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
