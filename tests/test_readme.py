"""The README documents every setting and every reason code, generated or checked from the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from webhook.core.reasons import Reason
from webhook.settings import VARIABLES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_variables_table_is_current() -> None:
    """The configuration table equals what scripts/update-readme.py generates from config.VARIABLES."""
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update-readme.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render(README) == README, "run: .venv/bin/python scripts/update-readme.py"
    for variable in VARIABLES:
        assert f"| `{variable.name}` |" in README


def test_every_reason_code_is_documented() -> None:
    """Each Reason value has a row in the README's reason table."""
    missing = [reason.value for reason in Reason if f"| `{reason.value}` |" not in README]
    assert missing == []
