"""ctrfs benchmark: ctrfs and its peers side by side on the same corpus, in the same run.

    python3 bench/run.py [--work DIR] [--runs N] [--tree C] [--peers-only] [--json FILE]
                         [--only NAME,...] [--before BINDIR]

1. builds the corpus with bench/corpus.py if it is missing (root, a few minutes, ~3 GB);
2. measures the peers (bench/peers.py);
3. measures ctrfs through its tools (bench/ctrfs_bench.py);
4. prints a table with the ratio ctrfs/peer and writes bench/results.json.

Exit 0 when every row was measured; 1 when any row was not (ctrfs tools missing, or a
benchmark failed): those rows say "not measured", no number is ever made up.
"""
import argparse
import datetime
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib as B  # noqa: E402
import corpus  # noqa: E402
import ctrfs_bench  # noqa: E402
import peers  # noqa: E402

# (label, unit, peer bench, peer key, ctrfs bench, ctrfs key, better)
# key is a path into the figures dict; a dict value means its median.
ROWS = [
    ("import tree: tar -x (+commit)", "s", "tar_extract_ext4", "seconds",
     "import_tar", "seconds", "lower"),
    ("import tree: file data rate", "MB/s", "tar_extract_ext4", "mb_per_s",
     "import_tar", "mb_per_s", "higher"),
    ("import tree: bytes used", "MB", "tar_extract_ext4", "bytes_used",
     "import_tar", "bytes_used", "lower"),
    ("1 GiB seq read, backing warm", "MB/s", "squashfuse_seq_read", "mb_per_s",
     "seq_read", "mb_per_s", "higher"),
    ("walk: find -type f | wc -l, cold", "ms", "squashfuse_walk", "find_ms",
     "walk", "find_ms", "lower"),
    ("walk: du -s, cold", "ms", "squashfuse_walk", "du_ms",
     "walk", "du_ms", "lower"),
    ("first 4 KiB write, mid 1 GiB file", "ms", "fuse_overlayfs_first_write", "first_write_seconds",
     "first_write", "first_write_seconds", "lower"),
    ("second 4 KiB write", "ms", "fuse_overlayfs_first_write", "second_write_seconds",
     "first_write", "second_write_seconds", "lower"),
    ("fsck -f -n of the tree", "s", "e2fsck_time", "seconds",
     "fsck_time", "seconds", "lower"),
    ("tar -x (+commit) vs fuse-overlayfs", "s", "fuse_overlayfs_tar_extract", "seconds",
     "import_tar", "seconds", "lower"),
    ("tar -x (+commit) vs the floor", "s", "floor_tar_extract", "seconds",
     "import_tar", "seconds", "lower"),
    ("cp -a of the tree (+syncfs, umount)", "s", "cp_a_ext4", "seconds",
     "cp_a", "seconds", "lower"),
    ("tar -c of the tree, fresh mount", "s", "squashfuse_tar_create", "seconds",
     "tar_create", "seconds", "lower"),
    ("mount of the image: first (daemon start)", "ms", "squashfuse_mount", "seconds",
     "mount_time", "first_seconds", "lower"),
    ("mount of the image: daemon running", "ms", "squashfuse_mount", "seconds",
     "mount_time", "served_seconds", "lower"),
    ("container start, cold: python3 imports", "ms", "squashfuse_container_start", "seconds",
     "container_start", "seconds", "lower"),
]
PEER_NAMES = {
    "tar_extract_ext4": "tar -x -> ext4",
    "squashfuse_seq_read": "squashfuse",
    "squashfuse_walk": "squashfuse",
    "fuse_overlayfs_first_write": "fuse-overlayfs",
    "e2fsck_time": "e2fsck -fn",
    "fuse_overlayfs_tar_extract": "fuse-overlayfs",
    "floor_tar_extract": "floorfs",
    "cp_a_ext4": "cp -a -> ext4",
    "squashfuse_tar_create": "squashfuse",
    "squashfuse_mount": "squashfuse",
    "squashfuse_container_start": "squashfuse",
}


def figure(results, bench, key, unit):
    """The row's number in the row's unit, or None when it was not measured."""
    f = results.get(bench)
    if not f or "error" in f or key not in f:
        return None
    v = f[key]
    if isinstance(v, dict):
        v = v["median"]
    if unit == "MB" and key == "bytes_used":
        v = v / B.MB
    elif unit == "ms" and (key == "seconds" or key.endswith("_seconds")):
        v = v * 1000
    return v


def build_rows(peer_res, ctrfs_res, before_res=None):
    rows = []
    for label, unit, pb, pk, cb, ck, better in ROWS:
        p = figure(peer_res, pb, pk, unit)
        c = figure(ctrfs_res or {}, cb, ck, unit)
        row = dict(label=label, unit=unit, better=better, peer=PEER_NAMES[pb],
                   peer_value=p, ctrfs_value=c, ratio=(c / p) if (p and c is not None) else None)
        if before_res is not None:
            b = figure(before_res, cb, ck, unit)
            row.update(before_value=b, before_ratio=(b / p) if (p and b is not None) else None)
        rows.append(row)
    return rows


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}".replace(",", " ")
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def print_table(rows, ctrfs_note):
    before = any("before_value" in r for r in rows)
    head = ("metric", "unit", "peer", "peer value") + (("before", "before/peer") if before else ()) + (
        "ctrfs", "ctrfs/peer", "better")
    table = [head]
    for r in rows:
        cells = [r["label"], r["unit"], r["peer"], fmt(r["peer_value"])]
        if before:
            cells += [fmt(r["before_value"]) if r["before_value"] is not None else "not measured",
                      f"{r['before_ratio']:.2f}x" if r["before_ratio"] is not None else "-"]
        cells += [fmt(r["ctrfs_value"]) if r["ctrfs_value"] is not None else "not measured",
                  f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-", r["better"]]
        table.append(tuple(cells))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for i, row in enumerate(table):
        print("  ".join(c.rjust(w) if 3 <= j < len(head) - 1 else c.ljust(w)
                        for j, (c, w) in enumerate(zip(row, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if ctrfs_note:
        print()
        print(ctrfs_note)


def short(err):
    """One line of an error for the table's note (results.json keeps it whole)."""
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"


def ensure_corpus(work, log):
    if B.corpus_complete(work):
        return
    log(f"corpus in {work} is missing or incomplete: building it with bench/corpus.py")
    try:
        corpus.build(work)
    except (corpus.CorpusError, RuntimeError, OSError) as exc:
        raise SystemExit(f"run.py: building the corpus failed: {exc}")
    if not B.corpus_complete(work):
        raise SystemExit(f"run.py: building the corpus left {work} incomplete")


def measure_with(bindir, work, args, only, log):
    """The ctrfs benchmarks with the tools of bindir (CTRFS_BIN), on devices of their own."""
    saved = os.environ.get("CTRFS_BIN")
    os.environ["CTRFS_BIN"] = bindir
    ctrfs_bench.forget_devices()
    try:
        return ctrfs_bench.run_all(work, args.runs, args.tree, only=only, log=lambda m: log("before: " + m))
    finally:
        if saved is None:
            os.environ.pop("CTRFS_BIN")
        else:
            os.environ["CTRFS_BIN"] = saved
        ctrfs_bench.forget_devices()


def machine_info():
    info = dict(kernel=platform.release(), python=platform.python_version(),
                cpus=os.cpu_count(), loadavg=[round(x, 2) for x in os.getloadavg()])
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_kib"] = int(f.readline().split()[1])
    except OSError:
        pass
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description="ctrfs vs its peers, side by side")
    ap.add_argument("--work", help=f"corpus dir (default $CTRFS_CORPUS, $WORK or {B.DEFAULT_WORK})")
    ap.add_argument("--runs", type=int, default=5, help="counted runs per figure (default 5)")
    ap.add_argument("--tree", default="C", choices="ABC", help="rootfs tree to import/walk/fsck")
    ap.add_argument("--peers-only", action="store_true", help="skip ctrfs (rows not measured)")
    ap.add_argument("--only", help="comma-separated benchmarks to run (peer and ctrfs names); "
                    "the other rows say not measured")
    ap.add_argument("--before", metavar="BINDIR", help="also measure the ctrfs tools in BINDIR "
                    "(e.g. another checkout's .venv/bin) in this run: the table's before column")
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"),
                    help="results file (default bench/results.json)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        ap.error("must run as root (loop mounts, drop_caches, FUSE)")

    def log(msg):
        print(f"[bench {datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)

    work = B.work_dir(args.work)
    ensure_corpus(work, log)
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()   # loadavg before: other work on the machine skews every figure

    only = set(args.only.split(",")) if args.only else None
    peer_res = peers.run_all(work, args.runs, args.tree, only=only, log=log)
    before_res = None
    if args.before and not args.peers_only:
        before_res = measure_with(args.before, work, args, only, log)

    ctrfs_res, ctrfs_note = None, ""
    missing = ctrfs_bench.missing_tools()
    if args.peers_only:
        ctrfs_note = "ctrfs rows were NOT measured (--peers-only)."
    elif missing:
        ctrfs_note = ("ctrfs rows were NOT measured: tools not found ($CTRFS_BIN, .venv/bin, PATH): " + ", ".join(missing) +
                      ". Install ctrfs (pip install -e . / make install) and rerun.")
    else:
        ctrfs_res = ctrfs_bench.run_all(work, args.runs, args.tree, only=only, log=log)
        failed = {k: v["error"] for k, v in ctrfs_res.items() if "error" in v}
        if failed:
            ctrfs_note = "ctrfs benchmarks that FAILED (rows not measured):\n" + "\n".join(
                f"  {k}: {short(v)}" for k, v in failed.items())

    peer_failed = {k: v["error"] for k, v in peer_res.items() if "error" in v}
    if peer_failed:
        ctrfs_note += ("\n" if ctrfs_note else "") + "peer benchmarks that FAILED:\n" + "\n".join(
            f"  {k}: {short(v)}" for k, v in peer_failed.items())

    rows = build_rows(peer_res, ctrfs_res, before_res)
    print(f"ctrfs vs peers, tree {args.tree}, {args.runs} runs each (medians; MB = 10^6 bytes)")
    print_table(rows, ctrfs_note)

    complete = all(r["peer_value"] is not None and r["ctrfs_value"] is not None for r in rows)
    B.save_json(args.json, dict(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=machine, loadavg_after=[round(x, 2) for x in os.getloadavg()], work=work, tree=args.tree, runs=args.runs,
        ctrfs_measured=ctrfs_res is not None, ctrfs_missing_tools=missing,
        ctrfs_tools=ctrfs_bench.tool_paths(relative=True),
        complete=complete, note=ctrfs_note, rows=rows, peers=peer_res, ctrfs=ctrfs_res,
        before=dict(bin=args.before, ctrfs=before_res) if args.before else None))
    log(f"wrote {args.json}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
