"""Regenerate the README's configuration table from webhook.settings.VARIABLES (tests check it is current)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webhook.cli.service import variables_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"<!-- variables -->\n.*?<!-- /variables -->", re.DOTALL)


def render(text: str) -> str:
    """README text with the variables block replaced by the generated table."""
    return BLOCK.sub(lambda _: f"<!-- variables -->\n{variables_markdown()}\n<!-- /variables -->", text)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
