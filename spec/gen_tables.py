"""Generate the structure tables of spec/FORMAT.md from format/, so the spec cannot drift.

Every module-level `Name = Struct(...)` in format/*.py gets one table between
`<!-- BEGIN Name -->` and `<!-- END Name -->`; constants.py gets the `constants` table.
Offsets and sizes come from the construct structs, meanings from each field's trailing
`# comment` in the source.

    .venv/bin/python spec/gen_tables.py          rewrite spec/FORMAT.md in place
    .venv/bin/python spec/gen_tables.py --check  exit 1 if spec/FORMAT.md is out of date
"""
import ast
import importlib
import inspect
import re
import sys
import types
from pathlib import Path

from construct import Array, Bytes, Const, FormatField, Padded, Prefixed, Renamed, Struct

SPEC = Path(__file__).resolve().parent / "FORMAT.md"
MODULES = ("superblock", "checkpoint", "pointer", "segment", "calog", "node", "items", "image", "acl")
CONSTANT_TABLE = "constants"
_FIELD = re.compile(r'"(\w+)"\s*/')
_COMMENT = re.compile(r"#\s?(.*)$")
_TYPES = {"B": "u8", "H": "u16", "L": "u32", "Q": "u64", "b": "i8", "h": "i16", "l": "i32", "q": "i64"}


def discover():
    """[(name, Struct, {field: meaning})] in module order, then source order."""
    found = []
    for modname in MODULES:
        module = importlib.import_module(f"ctrfs.format.{modname}")
        source = inspect.getsource(module)
        lines = source.splitlines()
        for node in ast.parse(source).body:
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                    and getattr(node.value.func, "id", None) == "Struct"):
                name = node.targets[0].id
                span = lines[node.lineno - 1:node.end_lineno]
                found.append((name, getattr(module, name), field_comments(span)))
    return found


def field_comments(lines):
    """{field name: comment} for lines that name exactly one field and end in a comment."""
    out = {}
    for line in lines:
        names = _FIELD.findall(line.split("#", 1)[0])
        comment = _COMMENT.search(line)
        if len(names) == 1 and comment:
            out[names[0]] = comment.group(1).strip()
    return out


def expr(e):
    """A count or length: an int, construct's `this` expression, or a one-line lambda."""
    if isinstance(e, int):
        return e
    if isinstance(e, types.FunctionType):
        m = re.search(r"lambda (\w+): \1\.([\w.]+)", inspect.getsource(e))
        if m:
            return m.group(2)
    return ".".join(re.findall(r"\['(\w+)'\]", str(e)))   # this['header']['nitems']


def describe(sub, names):
    """(type text, size int or str) of one subcon."""
    if isinstance(sub, Const):
        return f"bytes[{len(sub.value)}] = `{sub.value!r}`", len(sub.value)
    if isinstance(sub, FormatField):
        kind = _TYPES[sub.fmtstr[1]]
        return (kind if kind.endswith("8") else f"{kind} LE"), sub.sizeof()
    if isinstance(sub, Bytes):
        n = expr(sub.length)
        return f"bytes[{n}]", n
    if isinstance(sub, Padded):
        return "padding", sub.length
    if isinstance(sub, Prefixed):
        kind, _size = describe(sub.lengthfield, names)
        return f"{kind} length, then that many bytes", "variable"
    if isinstance(sub, Struct):
        name = names.get(id(sub), "struct")
        return f"[{name}](#{name.lower()})", _sizeof(sub)
    if isinstance(sub, Array):
        inner, size = describe(sub.subcon, names)
        n = expr(sub.count)
        total = n * size if isinstance(n, int) and isinstance(size, int) else "variable"
        return f"{inner} × {n}", total
    raise TypeError(f"no table rendering for {sub!r}")


def _sizeof(struct):
    try:
        return struct.sizeof()
    except Exception:  # construct raises SizeofError for variable-length structs
        return "variable"


def table(struct, comments, names):
    rows = ["| offset | size | field | type | meaning |", "|---:|---:|---|---|---|"]
    offset = 0
    for sc in struct.subcons:
        sub = sc.subcon if isinstance(sc, Renamed) else sc
        kind, size = describe(sub, names)
        field = f"`{sc.name}`" if sc.name else "(padding)"
        meaning = comments.get(sc.name, "")
        if isinstance(sub, Const):
            meaning = meaning or "magic"
        elif isinstance(sub, Padded):
            meaning = "zero"
        meaning = meaning.replace("|", r"\|")      # a | in a comment would split the cell
        rows.append(f"| {offset} | {size} | {field} | {kind} | {meaning} |")
        offset = _add(offset, size)
    total = _sizeof(struct)
    rows.append(f"|  | **{total}** | | | total |")
    return "\n".join(rows)


def _add(offset, size):
    """Offset of the next field: a number while sizes are fixed, else an expression."""
    if "variable" in (offset, size):
        return "variable"
    if isinstance(offset, int) and isinstance(size, int):
        return offset + size
    return f"{offset} + {size}"


def constants_table():
    """Every constant of constants.py with its value and comment."""
    from ctrfs.format import constants
    lines = inspect.getsource(constants).splitlines()
    rows = ["| constant | value | meaning |", "|---|---|---|"]
    for line in lines:
        m = re.match(r"([A-Z][A-Z0-9_]*)\s*=", line)
        if not m:
            continue
        name = m.group(1)
        comment = _COMMENT.search(line.split("=", 1)[1])
        value = getattr(constants, name)
        shown = hex(value) if name.startswith(("INCOMPAT_", "ALL_INCOMPAT", "INODE_")) else repr(value)
        rows.append(f"| `{name}` | `{shown}` | {comment.group(1).strip() if comment else ''} |")
    return "\n".join(rows)


def tables():
    """{marker name: markdown table} for everything the spec must contain."""
    found = discover()
    names = {}
    for name, struct, _c in found:
        names.setdefault(id(struct), name)
    out = {name: table(struct, comments, names) for name, struct, comments in found}
    out[CONSTANT_TABLE] = constants_table()
    return out


def render(text, generated):
    """text with every marked block replaced; raises KeyError naming a missing marker."""
    for name, body in generated.items():
        pattern = re.compile(rf"(<!-- BEGIN {name} -->\n).*?(<!-- END {name} -->)", re.S)
        if not pattern.search(text):
            raise KeyError(f"spec/FORMAT.md has no <!-- BEGIN {name} --> block")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    return text


def main(argv):
    text = SPEC.read_text()
    new = render(text, tables())
    if "--check" in argv:
        if new != text:
            print("spec/FORMAT.md is out of date: run spec/gen_tables.py", file=sys.stderr)
            return 1
        return 0
    SPEC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
