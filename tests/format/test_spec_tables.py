"""spec/FORMAT.md cannot drift from format/: its tables are what spec/gen_tables.py makes
now, and every construct Struct of ctrfs.format has one."""
import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

from construct import Struct

import ctrfs.format

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "spec" / "FORMAT.md"


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_tables", REPO / "spec" / "gen_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def format_structs():
    """{id: (struct, {names})} of every Struct reachable as a module attribute of ctrfs.format."""
    found = {}
    for info in pkgutil.iter_modules(ctrfs.format.__path__):
        module = importlib.import_module(f"ctrfs.format.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, Struct):
                found.setdefault(id(obj), (obj, set()))[1].add(name)
    return found


def test_tables_are_up_to_date():
    gen = load_generator()
    text = SPEC.read_text()
    assert gen.render(text, gen.tables()) == text, "spec/FORMAT.md is stale: run .venv/bin/python spec/gen_tables.py"


def test_every_struct_has_a_table():
    text = SPEC.read_text()
    marked = set(re.findall(r"<!-- BEGIN (\w+) -->", text))
    missing = [sorted(names) for _s, names in format_structs().values() if not names & marked]
    assert not missing, f"structs without a table in spec/FORMAT.md: {missing}"


def test_markers_are_paired_and_known():
    text = SPEC.read_text()
    begins = re.findall(r"<!-- BEGIN (\w+) -->", text)
    ends = re.findall(r"<!-- END (\w+) -->", text)
    assert begins == ends and len(set(begins)) == len(begins)
    assert set(begins) == set(load_generator().tables())


def test_generator_check_mode_passes():
    assert load_generator().main(["--check"]) == 0
