"""ctrfs images DEVICE: the images and writable trees, with tags, root hashes, sizes,
creation times and parents (a table, or --json); the layers below images with --all, as
`docker images -a`."""
import json
import sys

from .. import catalogue
from ..tool import format_size, note_unlocked, open_engine_readonly


def add_parser(sub):
    s = sub.add_parser("images", help="list images and writable trees")
    s.add_argument("device", metavar="DEVICE")
    s.add_argument("--json", action="store_true", help="JSON output")
    s.add_argument("--long", action="store_true", help="full root hashes")
    s.add_argument("--bytes", action="store_true", help="sizes in bytes")
    s.add_argument("-a", "--all", action="store_true", help="also the layers below images (@layer/...)")
    s.set_defaults(func=run)


def run(args):
    engine, locked = open_engine_readonly(args.device)
    try:
        note_unlocked(locked)
        rows = [r for r in catalogue.rows(engine)
                if args.all or not catalogue.is_hidden(r["name"].encode("utf-8", "surrogateescape"))]
    finally:
        engine.close()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    hashlen = 64 if args.long else 12
    table = [("NAME", "TAG", "KIND", "ROOT", "SIZE", "CREATED", "PARENT")]
    for r in rows:
        table.append((r["image"], r["tag"] or "-", r["kind"], r["root"][:hashlen],
                      str(r["size"]) if args.bytes else format_size(r["size"]),
                      r["created"], catalogue.shown(r["parent"]) if r["parent"] else "-"))
    print_table(table)
    return 0


def print_table(table):
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
