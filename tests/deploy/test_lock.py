"""requirements.lock: every runtime dependency pinned with hashes, in step with pyproject.toml,
and what the Dockerfile installs (with `--require-hashes`). Regenerate it with scripts/lock.sh."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from typing import Final

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.support import DOCKERFILE, README, ROOT

LOCK: Final = ROOT / "requirements.lock"
PYPROJECT: Final = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: The image's interpreter (python:3.11-slim on Linux): markers are evaluated for it.
IMAGE_ENV: Final[dict[str, str]] = {
    **{key: str(value) for key, value in default_environment().items()},
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
REGENERATE: Final = "the lock is out of step with pyproject.toml: run ./scripts/lock.sh"


@dataclass(frozen=True, slots=True)
class Pin:
    name: str
    version: Version
    hashes: tuple[str, ...]


def pins() -> dict[str, Pin]:
    """Canonical name -> pin, parsed from requirements.lock (pip-compile's hashed format)."""
    found: dict[str, Pin] = {}
    for block in re.split(r"\n(?=\S)", LOCK.read_text()):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match is None:
            assert block.startswith("#") or not block.strip(), f"unexpected line in the lock: {block[:80]!r}"
            continue
        name = canonicalize_name(match.group(1))
        found[name] = Pin(name, Version(match.group(2)), tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", block)))
    return found


def declared() -> list[Requirement]:
    """The runtime dependencies and the build backend pyproject.toml names."""
    names = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
    return [Requirement(text) for text in names]


def test_every_locked_package_is_pinned_exactly_with_hashes() -> None:
    """Each entry is `name==version` with at least one sha256, and the lock names no index or link."""
    locked = pins()
    assert len(locked) >= 20
    assert [pin.name for pin in locked.values() if not pin.hashes] == []
    text = LOCK.read_text()
    assert not re.search(r"^\s*--(index-url|extra-index-url|find-links|trusted-host)", text, re.MULTILINE)


def test_lock_covers_every_runtime_dependency_within_its_range() -> None:
    """Every dependency of [project] (and the build backend) is pinned at a version its range allows."""
    locked = pins()
    for requirement in declared():
        pin = locked.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement.name} is not in requirements.lock; {REGENERATE}"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            str(requirement),
            str(pin.version),
            REGENERATE,
        )


def _requires(name: str, extras: set[str]) -> list[Requirement]:
    requirements = []
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({**IMAGE_ENV, "extra": extra}) for extra in extras | {""}):
            requirements.append(requirement)
    return requirements


def test_lock_holds_what_the_locked_packages_need_on_the_image() -> None:
    """Walking the declared dependencies (with their extras) through the installed packages' metadata,
    for Python 3.11 on Linux, reaches only locked packages: pip's --require-hashes would refuse any other."""
    locked = pins()
    extras: dict[str, set[str]] = {}
    queue = []
    for requirement in PYPROJECT["project"]["dependencies"]:
        parsed = Requirement(requirement)
        extras.setdefault(canonicalize_name(parsed.name), set()).update(parsed.extras)
        queue.append(canonicalize_name(parsed.name))
    seen: set[str] = set()
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        assert name in locked, f"{name} is needed but not locked; {REGENERATE}"
        for requirement in _requires(name, extras.get(name, set())):
            child = canonicalize_name(requirement.name)
            extras.setdefault(child, set()).update(requirement.extras)
            queue.append(child)
    assert len(seen) >= 20
    assert locked.keys() - seen <= {"setuptools"}, "locked but needed by nothing: run ./scripts/lock.sh"


def test_dockerfile_installs_the_lock_with_hashes_and_resolves_nothing_else() -> None:
    """The image installs requirements.lock with --require-hashes; the project itself with --no-deps
    and the locked build backend; no other pip install."""
    text = DOCKERFILE.read_text()
    installs = re.findall(r"pip install[^\n]*", text)
    assert "pip install --require-hashes -r requirements.lock" in installs
    others = [line for line in installs if "--require-hashes" not in line]
    assert others and all("--no-deps" in line and "--no-build-isolation" in line for line in others), others
    assert text.index("COPY requirements.lock") < text.index("pip install --require-hashes")


def test_regenerating_the_lock_is_one_documented_command() -> None:
    """scripts/lock.sh exists and the README tells when to run it."""
    assert (ROOT / "scripts" / "lock.sh").stat().st_mode & 0o111
    assert "./scripts/lock.sh" in README.read_text()
