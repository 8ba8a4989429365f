"""ctrfs df DEVICE: logical against physical bytes, the dedup ratio, and per image and tree
the bytes only it holds and the bytes it shares (figures from ctrfs/diskusage.py)."""
import json
import sys

from .. import catalogue, diskusage
from ..tool import format_size, note_unlocked, open_engine_readonly
from .images import print_table


def add_parser(sub):
    s = sub.add_parser("df", help="space used: logical vs physical bytes, per image unique and shared")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("--json", action="store_true", help="JSON output")
    s.add_argument("--bytes", action="store_true", help="sizes in bytes")
    s.set_defaults(func=run)


def run(args):
    engine, locked = open_engine_readonly(args.device)
    try:
        note_unlocked(locked)
        snaps = list(engine.snapshots())
        sizes = catalogue.logical_sizes(engine, snaps)
        res = diskusage.report(engine, snaps, hidden=catalogue.is_hidden,
                               logical=lambda name, e: sizes[name])
    finally:
        engine.close()
    shown = {}
    for t in res["trees"]:
        shown[id(t)] = catalogue.shown(t["name"])
        t["name"] = t["name"].decode("utf-8", "backslashreplace")
    if args.json:
        json.dump(res, sys.stdout, indent=2)
        print()
        return 0
    size = (lambda n: str(n)) if args.bytes else format_size
    d = res["device"]
    ratio = f"{d['dedup_ratio']:.2f}x" if d["dedup_ratio"] else "-"
    print(f"device {size(d['size'])}: used {size(d['used'])}, free {size(d['free'])}; "
          f"file data {size(d['data'])} stored for {size(d['logical'])} logical (dedup {ratio}), "
          f"metadata and free space in use {size(d['metadata'])}")
    table = [("NAME", "KIND", "LOGICAL", "BLOCKS", "UNIQUE", "SHARED")]
    for t in res["trees"]:
        table.append((shown[id(t)], t["kind"],
                      size(t["logical"]), size(t["referenced"]), size(t["unique"]), size(t["shared"])))
    print_table(table)
    return 0
