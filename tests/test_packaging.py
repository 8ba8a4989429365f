"""Packaging guards (STYLE.md, "the trap"): format/, fsck/ and mkfs/ are ctrfs.format,
ctrfs.fsck and ctrfs.mkfs, never top-level packages, and every sub-package is listed."""
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import ctrfs.format

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
TOP_LEVEL = ("format", "fsck", "mkfs")


def package_dirs():
    """{package name: directory} from package-dir, including the implicit "ctrfs" -> ctrfs/."""
    return {"ctrfs": "ctrfs", **SETUPTOOLS.get("package-dir", {})}


def packages_on_disk():
    """Every directory with an __init__.py under a mapped root, as a dotted package name."""
    mapped = package_dirs()
    roots = {REPO / d: name for name, d in mapped.items()}
    found = set()
    for root, name in roots.items():
        for init in root.rglob("__init__.py"):
            pkg_dir = init.parent
            # a sub-directory that is itself a mapped root is named by its own mapping
            owner = max((r for r in roots if pkg_dir == r or r in pkg_dir.parents), key=lambda r: len(r.parts))
            if owner == root:
                rel = pkg_dir.relative_to(root).parts
                found.add(".".join((name,) + rel))
    return found


def test_package_list_matches_directories():
    assert set(SETUPTOOLS["packages"]) == packages_on_disk()
    assert len(SETUPTOOLS["packages"]) == len(set(SETUPTOOLS["packages"]))


def test_every_top_level_package_directory_is_mapped():
    mapped = set(package_dirs().values())
    unmapped = [p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name not in mapped]
    assert not unmapped, f"directories with __init__.py that pyproject does not map: {unmapped}"


def test_format_comes_from_the_repository_format_dir():
    assert Path(ctrfs.format.__file__).resolve().parent == REPO / "format"
    for name in TOP_LEVEL:
        assert name not in sys.modules, f"a top-level {name!r} module was imported"


def test_no_top_level_format_fsck_mkfs_outside_the_repository(tmp_path):
    code = ("import importlib.util, sys; "
            f"print([n for n in {TOP_LEVEL!r} if importlib.util.find_spec(n) is not None])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    code = "import ctrfs.format, ctrfs.fsck, ctrfs.mkfs; print(ctrfs.format.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve().parent == REPO / "format"


def test_wheel_holds_only_ctrfs(tmp_path):
    # build from a copy, so the build/ and egg-info droppings stay out of the working tree
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".hypothesis", ".pytest_cache", "__pycache__", "*.img"))
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)],
                   check=True, capture_output=True)
    (wheel,) = out.glob("ctrfs-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    stray = [n for n in names if not n.startswith("ctrfs/") and ".dist-info/" not in n]
    assert not stray, f"wheel has files outside ctrfs/: {stray[:10]}"
    for pkg in SETUPTOOLS["packages"]:
        assert pkg.replace(".", "/") + "/__init__.py" in names
    assert "ctrfs/format/constants.py" in names
