"""Container images in and out, side by side in one run (issue: images in and out):

1. import the corpus OCI tags A, B, C into one fresh ctrfs device (each imports only its
   new layers) vs `umoci unpack` of C alone, and vs `tar -x` of each rootfs tar onto ext4;
2. bytes on the device for A+B+C vs the 4 KiB unique-block ideal of the three trees (and
   vs one `mkfs.erofs --chunksize=4096` image of all three when mkfs.erofs is installed);
3. export of C as an OCI layout vs `umoci repack` of C (unpacked by umoci, one file
   touched, so repack writes one new layer and re-hashes the tree as it does).

    python3 bench/images.py [--runs N] [--work CORPUS]      # root; corpus from bench/corpus.py

Medians of N whole-process runs; a table on stdout and bench/results-images.json.
Rows that could not be measured say why.  MB = 10^6 bytes.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import blake3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from ctrfs_bench import tool  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BS = 4096


def tree_bytes(root):
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.isfile(p) and not os.path.islink(p):
                total += os.lstat(p).st_size
    return total


def ideal_bytes(roots):
    """Distinct 4 KiB blocks over every regular file of the trees (tails zero-padded,
    all-zero blocks are holes), times 4 KiB."""
    seen, zero = set(), bytes(BS)
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                p = os.path.join(dirpath, f)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                with open(p, "rb") as fh:
                    while block := fh.read(BS):
                        block = block.ljust(BS, b"\0")
                        if block != zero:
                            seen.add(blake3.blake3(block).digest(16))
    return len(seen) * BS


def bench_import(p, tmp, runs):
    ctrfs, mkfs = tool("ctrfs"), tool("mkfs.ctrfs")
    times, used = [], None
    for _ in range(runs):
        dev = os.path.join(tmp, "import.img")
        B.run([mkfs, "-q", "-f", "-s", "4G", dev])
        B.drop_caches()
        t = sum(B.timed([ctrfs, "import", "-q", dev, f"oci:{p['oci']}:{tag}", "--name", f"corpus:{tag}"])
                for tag in "ABC")
        times.append(t)
        used = json.loads(B.run([ctrfs, "df", "--json", dev], capture=True))["device"]
    return times, used, dev


def bench_umoci_unpack(p, tmp, runs):
    times = []
    for _ in range(runs):
        dest = os.path.join(tmp, "umoci-C")
        shutil.rmtree(dest, ignore_errors=True)
        B.drop_caches()
        times.append(B.timed(["umoci", "unpack", "--image", f"{p['oci']}:C", dest]))
    return times


def bench_tar_ext4(p, tmp, runs):
    img, mnt = os.path.join(tmp, "ext4.img"), os.path.join(tmp, "ext4")
    os.makedirs(mnt, exist_ok=True)
    times = []
    for _ in range(runs):
        B.fresh_ext4(img, 4 << 30)
        with B.loop_mount(img, mnt):
            B.drop_caches()
            t = 0.0
            for tag in "ABC":
                d = os.path.join(mnt, tag)
                os.makedirs(d)
                t += B.timed(["tar", "-xf", p["tars"][tag], "-C", d])
            t += B.timed(["sync"])
            times.append(t)
    return times


def bench_erofs(p, tmp):
    if not B.which("mkfs.erofs"):
        return None, "mkfs.erofs not installed (Debian: erofs-utils)"
    top = os.path.join(tmp, "erofs-src")
    os.makedirs(top, exist_ok=True)
    for tag in "ABC":
        link = os.path.join(top, tag)
        if not os.path.exists(link):
            B.run(["cp", "-a", "--reflink=auto", p["rootfs"][tag], link])
    img = os.path.join(tmp, "abc.erofs")
    res = B.run(["mkfs.erofs", "--chunksize=4096", "-Ededupe", img, top], check=False)
    if res.returncode != 0:
        res = B.run(["mkfs.erofs", "--chunksize=4096", img, top], check=False)
    if res.returncode != 0:
        return None, "mkfs.erofs --chunksize=4096 failed: " + (res.stderr or "").strip()[-200:]
    return os.path.getsize(img), ""


def bench_export(dev, tmp, runs):
    ctrfs = tool("ctrfs")
    times = []
    for _ in range(runs):
        dest = os.path.join(tmp, "export-C")
        shutil.rmtree(dest, ignore_errors=True)
        B.drop_caches()
        times.append(B.timed([ctrfs, "export", "-q", "--format", "oci", dev, "corpus:C", dest]))
    return times


def bench_umoci_repack(p, tmp, runs):
    layout = os.path.join(tmp, "repack-oci")
    shutil.rmtree(layout, ignore_errors=True)
    B.run(["cp", "-a", p["oci"], layout])
    times = []
    for i in range(runs):
        bundle = os.path.join(tmp, f"repack-bundle{i}")
        shutil.rmtree(bundle, ignore_errors=True)
        B.run(["umoci", "unpack", "--image", f"{layout}:C", bundle])
        with open(os.path.join(bundle, "rootfs", "etc", "ctrfs-bench"), "w") as f:
            f.write(str(i))
        B.drop_caches()
        times.append(B.timed(["umoci", "repack", "--image", f"{layout}:C{i}", bundle]))
        shutil.rmtree(bundle, ignore_errors=True)
    return times


def row(metric, unit, peer, peer_val, ctrfs_val, better):
    ratio = ctrfs_val / peer_val if peer_val and ctrfs_val is not None else None
    return dict(metric=metric, unit=unit, peer=peer, peer_value=peer_val, ctrfs=ctrfs_val,
                ratio=round(ratio, 3) if ratio else None, better=better)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work")
    ap.add_argument("--json", default=os.path.join(HERE, "results-images.json"))
    args = ap.parse_args(argv)
    p = B.corpus_paths(args.work)
    if not B.corpus_complete(args.work):
        raise SystemExit(f"images.py: no complete corpus in {p['work']} (run bench/corpus.py)")
    data = sum(tree_bytes(p["rootfs"][t]) for t in "ABC")
    c_data = tree_bytes(p["rootfs"]["C"])
    rows, notes = [], []
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="ctrfs-bench-images-") as tmp:
        imp, used, dev = bench_import(p, tmp, args.runs)
        unpack = bench_umoci_unpack(p, tmp, args.runs)
        ext4 = bench_tar_ext4(p, tmp, args.runs)
        imp_s, unpack_s, ext4_s = (B.summarize(x)["median"] for x in (imp, unpack, ext4))
        rows.append(row("import A+B+C (one device)", "s", "umoci unpack of C alone", unpack_s, imp_s, "lower"))
        rows.append(row("import A+B+C (one device)", "s", "tar -x A,B,C -> ext4", ext4_s, imp_s, "lower"))
        rows.append(row("import: file data rate", "MB/s", "tar -x A,B,C -> ext4",
                        round(B.mb_per_s(data, ext4_s), 1), round(B.mb_per_s(data, imp_s), 1), "higher"))
        ideal = ideal_bytes([p["rootfs"][t] for t in "ABC"])
        rows.append(row("bytes for A+B+C (device used)", "MB", "4 KiB unique-block ideal",
                        round(ideal / 1e6, 1), round(used["used"] / 1e6, 1), "lower"))
        erofs, why = bench_erofs(p, tmp)
        if erofs:
            rows.append(row("bytes for A+B+C (device used)", "MB", "mkfs.erofs --chunksize=4096",
                            round(erofs / 1e6, 1), round(used["used"] / 1e6, 1), "lower"))
        else:
            notes.append(f"erofs row not measured: {why}")
        exp = B.summarize(bench_export(dev, tmp, args.runs))["median"]
        repack = B.summarize(bench_umoci_repack(p, tmp, args.runs))["median"]
        rows.append(row("export C as OCI (gzip)", "s", "umoci repack of C (one file changed)", repack, exp, "lower"))
    out = dict(runs=args.runs, file_data_bytes=data, c_file_data_bytes=c_data,
               device=used, rows=rows, notes=notes, machine=dict(loadavg=os.getloadavg()))
    B.save_json(args.json, out)
    print(f"images in and out, corpus {p['work']}, {args.runs} runs each (medians; MB = 10^6 bytes)")
    print(f"{'metric':32} {'unit':5} {'peer':38} {'peer value':>10} {'ctrfs':>8} {'ratio':>7}  better")
    for r in rows:
        print(f"{r['metric']:32} {r['unit']:5} {r['peer']:38} {r['peer_value']!s:>10} {r['ctrfs']!s:>8} "
              f"{(str(r['ratio']) + 'x') if r['ratio'] else '-':>7}  {r['better']}")
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
