"""Helpers of the format tests: hypothesis strategies derived from construct structs, the
one round-trip check (parse, build, size, compiled form together) and bit flips."""
from construct import Array, Bytes, Const, FormatField, Struct
from hypothesis import strategies as st

from ctrfs.errors import CorruptError


def plain(obj):
    """construct Containers/ListContainers -> dicts/lists without construct's `_` keys."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    return obj


def from_struct(struct, **fixed):
    """Strategy for build() input of a fixed-size Struct; `fixed` overrides fields."""
    fields = {}
    for sc in struct.subcons:
        if sc.name is not None:
            fields[sc.name] = fixed[sc.name] if sc.name in fixed else _strategy(sc.subcon)
    return st.fixed_dictionaries({k: v if isinstance(v, st.SearchStrategy) else st.just(v)
                                  for k, v in fields.items()})


def _strategy(sub):
    if isinstance(sub, Const):
        return st.just(sub.value)
    if isinstance(sub, FormatField):
        bits = 8 * sub.sizeof()
        if sub.fmtstr[1].islower():
            return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        return st.integers(0, (1 << bits) - 1)
    if isinstance(sub, Bytes) and isinstance(sub.length, int):
        return st.binary(min_size=sub.length, max_size=sub.length)
    if isinstance(sub, Struct):
        return from_struct(sub)
    if isinstance(sub, Array) and isinstance(sub.count, int):
        return st.lists(_strategy(sub.subcon), min_size=sub.count, max_size=sub.count)
    raise TypeError(f"no strategy for {sub!r}")


def check_struct(struct, value, size):
    """build -> parse is the identity, parse -> build too, the size is the pinned one,
    and the compiled struct parses and builds exactly as the reference does."""
    raw = struct.build(value)
    assert len(raw) == size == struct.sizeof()
    parsed = struct.parse(raw)
    assert plain(parsed) == value
    assert struct.build(parsed) == raw
    compiled = _compiled(struct)
    assert plain(compiled.parse(raw)) == value
    assert compiled.build(value) == raw
    return raw


def field_offset(struct, name):
    """Byte offset of a field in a fixed-size struct."""
    offset = 0
    for sc in struct.subcons:
        if sc.name == name:
            return offset
        offset += sc.sizeof()
    raise KeyError(name)


_COMPILED = {}


def _compiled(struct):
    """struct.compile(), once per struct (compiling costs milliseconds)."""
    if id(struct) not in _COMPILED:
        _COMPILED[id(struct)] = (struct, struct.compile())
    return _COMPILED[id(struct)][1]


def flipped(raw, bit):
    """raw with one bit inverted (bit 0 = least significant bit of byte 0)."""
    out = bytearray(raw)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def assert_flips_detected(decode, raw, start, end):
    """Every single-bit flip in raw[start:end] makes decode raise CorruptError."""
    missed = []
    for bit in range(8 * start, 8 * end):
        try:
            decode(flipped(raw, bit))
        except CorruptError:
            continue
        missed.append(bit)
    assert not missed, f"undetected bit flips at bits {missed[:10]} (of {len(missed)})"


def decodes_or_corrupt(decode, raw):
    """Totality: decode returns, or raises CorruptError; anything else propagates."""
    try:
        return decode(raw)
    except CorruptError as exc:
        assert str(exc), "CorruptError without a message"
        return None
