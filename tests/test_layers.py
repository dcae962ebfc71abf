"""The package layering of README "Development", held by import-linter's contracts in pyproject.toml."""

from __future__ import annotations

import ast
import io
import pathlib
import tomllib
from contextlib import redirect_stdout
from typing import Any

from importlinter.cli import lint_imports

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return config


def test_no_import_runs_from_a_lower_package_up_or_into_the_fakes() -> None:
    """Every contract is kept: packages import downwards only, core does no IO, fakes stand alone."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert code == 0, out.getvalue()


def test_every_package_and_top_level_module_has_its_layer() -> None:
    """A new package or top-level module cannot escape the layering by not being listed in it."""
    (layers,) = (c for c in _config()["contracts"] if c["id"] == "layers")
    listed = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    package = ROOT / "webhook"
    present = {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    present |= {p.stem for p in package.glob("*.py") if not p.stem.startswith("__")}
    assert present - {"testing"} == listed, "add the new package or module to [tool.importlinter] layers"


def test_every_package_says_what_it_owns_and_may_import() -> None:
    """Each package's docstring names what it may import (the rule a reader checks a change against)."""
    for init in sorted((ROOT / "webhook").glob("*/__init__.py")):
        assert "May import" in init.read_text(), init.parent.name


MAX_MODULE_LINES = 400


def test_no_module_outgrows_one_reader_without_saying_why() -> None:
    """A module over ~400 lines states why in its docstring (a line starting `Size:`), else it is split."""
    oversized = []
    for path in sorted((ROOT / "webhook").rglob("*.py")):
        text = path.read_text()
        if text.count("\n") <= MAX_MODULE_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.strip().startswith("Size:") for line in docstring.splitlines()):
            oversized.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not oversized, oversized
