"""Dockerfile and .dockerignore, read statically (no Docker engine here): stages, user, healthcheck, contents.

The image's file layout is derived by following the COPY instructions through the stages, then
checked against what the code needs at run time: `webhook.db.engine` resolves migrations/ next to the
package, `alembic` reads [tool.alembic] from pyproject.toml, the realm templates are package data.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import tomllib
from typing import Final

from tests.deploy.support import (
    DOCKERFILE,
    ROOT,
    Instruction,
    Stage,
    in_build_context,
    parse_dockerfile,
    resolved_environment,
)
from webhook.settings import VARIABLES

BUILD_TOOLS: Final = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cargo|rustc|libc6-dev|python3-dev)\b")


def _stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())[1]


def _final() -> Stage:
    return _stages()[-1]


def _image_files() -> dict[str, dict[str, str]]:
    """Per stage: path in the image -> path in the build context, following every COPY (and WORKDIR)."""
    files: dict[str, dict[str, str]] = {}
    context = [  # top-level entries the allow-list drops are not walked (.venv, .git...)
        path.relative_to(ROOT).as_posix()
        for top in ROOT.iterdir()
        if in_build_context(top.name)
        for path in ([top] if top.is_file() else top.rglob("*"))
        if path.is_file() and in_build_context(path.relative_to(ROOT).as_posix())
    ]
    for index, stage in enumerate(_stages()):
        name = stage.name or str(index)
        tree: dict[str, str] = {}
        workdir = "/"
        for instruction in stage.instructions:
            if instruction.keyword == "WORKDIR":
                workdir = posixpath.join(workdir, instruction.operands[0])
            if instruction.keyword != "COPY":
                continue
            *sources, dest = instruction.operands
            dest = posixpath.join(workdir, dest)
            origin = instruction.flags.get("from")
            for source in sources:
                if origin is None:
                    src = source.strip("/").removeprefix("./")
                    items = {p: p for p in context if p == src or p.startswith(f"{src}/")}
                    base = src
                else:
                    src = source.rstrip("/")
                    items = {p: c for p, c in files[origin].items() if p == src or p.startswith(f"{src}/")}
                    base = src
                for path, origin_path in items.items():
                    relative = path[len(base) :].lstrip("/")
                    if relative:  # a directory's contents go into dest
                        target = posixpath.join(dest, relative)
                    elif dest.endswith("/") or len(sources) > 1:
                        target = posixpath.join(dest, posixpath.basename(path))
                    else:
                        target = dest
                    tree[posixpath.normpath(target)] = origin_path
        files[name] = tree
    return files


def _commands(stage: Stage, keyword: str) -> list[str]:
    return [" ".join(i.operands) if i.operands else i.arguments for i in stage.all(keyword)]


def test_multi_stage_slim_final_without_build_tools() -> None:
    """A builder stage has the compilers; the final stage is python:3.11-slim and installs none."""
    stages = _stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert any(BUILD_TOOLS.search(run) for run in _commands(builder, "RUN"))
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", final.base)
    assert not any(BUILD_TOOLS.search(run) for run in _commands(final, "RUN"))
    assert not any("apt-get install" in run or "apk add" in run for run in _commands(final, "RUN"))
    assert all(i.flags.get("from") in {s.name for s in stages[:-1]} for i in final.all("COPY") if i.flags)


def test_final_stage_runs_as_non_root_with_a_healthcheck() -> None:
    """USER is a non-root numeric uid; HEALTHCHECK probes /healthz with python (the image has no curl)."""
    final = _final()
    users = final.all("USER")
    assert users, "the final stage sets no USER"
    user = users[-1].operands[0].split(":")[0]
    assert user.isdigit() and int(user) != 0, "use a numeric non-root uid (Kubernetes runAsNonRoot checks it)"
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "/healthz" in healthcheck.arguments and "python" in healthcheck.arguments
    assert "curl" not in healthcheck.arguments


def test_serves_on_the_exposed_port() -> None:
    """CMD is `webhook serve --host 0.0.0.0` on the service's default PORT, which is the EXPOSEd one."""
    final = _final()
    (cmd,) = final.all("CMD")
    assert cmd.operands == ["webhook", "serve", "--host", "0.0.0.0"]
    port = {v.name: v.default for v in VARIABLES}["PORT"]
    assert [i.operands for i in final.all("EXPOSE")] == [[port]]
    assert resolved_environment("webhook")["PORT"] == port


def test_image_contains_what_db_upgrade_and_provisioning_need() -> None:
    """/app holds webhook/, migrations/ beside it (webhook.db.engine), pyproject.toml, realm templates."""
    final = _image_files()[_final().name or str(len(_stages()) - 1)]
    workdir = posixpath.join("/", *(i.operands[0] for i in _final().all("WORKDIR")))
    assert workdir == "/app"
    migrations = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "migrations").rglob("*.py"))
    assert migrations
    for path in [
        *migrations,
        "migrations/script.py.mako",
        "pyproject.toml",
        "webhook/db/engine.py",
        "webhook/cli/__init__.py",
    ]:
        assert final.get(f"/app/{path}") == path, f"{path} is not at /app/{path} in the image"
    templates = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "webhook" / "realm_templates").glob("*.json"))
    for path in templates:
        assert final.get(f"/app/{path}") == path
    alembic = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["alembic"]
    assert alembic["script_location"] == "%(here)s/migrations"
    installs = " ".join(_commands(_stages()[0], "RUN"))
    assert "--editable ." in installs, "the package must stay at /app/webhook (webhook.db.engine finds ../migrations)"


def test_build_context_is_an_allow_list() -> None:
    """.dockerignore sends what the Dockerfile copies and never secrets, caches or the test suite."""
    for instruction in (i for stage in _stages() for i in stage.all("COPY") if "from" not in i.flags):
        for source in instruction.operands[:-1]:
            assert (ROOT / source).exists() and in_build_context(source.rstrip("/")), source
    for excluded in (
        ".env",
        ".env.example",
        ".venv/bin/python",
        "var/webhook.sqlite3",
        "tests/conftest.py",
        ".git/HEAD",
    ):
        assert not in_build_context(excluded), excluded
    assert not in_build_context("webhook/__pycache__/app.cpython-311.pyc")
    assert in_build_context("webhook/realm_templates/tenant.json")


def _instructions_named(keyword: str) -> list[Instruction]:
    return [i for stage in _stages() for i in stage.all(keyword)]


def test_no_secret_or_dev_setting_baked_into_the_image() -> None:
    """ENV/ARG never carry secrets or a database URL: those come from the environment at run time."""
    for instruction in _instructions_named("ENV") + _instructions_named("ARG"):
        assert not re.search(r"SECRET|PASSWORD|DATABASE_URL|TOKEN", instruction.arguments, re.IGNORECASE)


def test_wheel_package_data_covers_every_data_file() -> None:
    """Every non-Python file of the package (realm templates...) is package data, so `pip install .` ships it."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["webhook"]
    package = ROOT / "webhook"
    data = [
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert data
    assert [path for path in data if not any(fnmatch.fnmatch(path, pattern) for pattern in patterns)] == []
