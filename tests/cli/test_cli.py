"""The `webhook` command: check-config, probe-jwks, explain, dev's loopback guard, python -m."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from webhook.cli import main
from webhook.testing.keycloak import FakeKeycloak

TENANT = "tenant-5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
CHECKOUT = Path(__file__).resolve().parents[2]
#: Bound on `webhook dev` becoming ready (a subprocess start on a loaded 2-core machine).
DEV_START_SECONDS = 60.0


@pytest.fixture(scope="module")
def keycloak() -> Iterator[FakeKeycloak]:
    fake = FakeKeycloak()
    fake.add_realm(TENANT)
    with fake.serve_in_thread():
        yield fake


@pytest.fixture
def env(keycloak: FakeKeycloak) -> dict[str, str]:
    return {"KEYCLOAK_URL": keycloak.url, "LOG_FORMAT": "console"}


def test_check_config_prints_settings(env: dict[str, str]) -> None:
    """check-config prints the effective settings and exits 0."""
    result = CliRunner().invoke(main, ["check-config"], env=env)
    assert result.exit_code == 0, result.output
    assert '"keycloak_url"' in result.output


def test_check_config_names_the_bad_variable(env: dict[str, str]) -> None:
    """A bad value exits 2 with a message naming the variable."""
    result = CliRunner().invoke(main, ["check-config"], env={**env, "ALLOWED_ALGORITHMS": "HS256"})
    assert result.exit_code == 2
    assert "ALLOWED_ALGORITHMS" in result.output


def test_probe_jwks_lists_signing_keys(env: dict[str, str], keycloak: FakeKeycloak) -> None:
    """probe-jwks fetches the realm's JWKS from KEYCLOAK_URL and lists the usable keys."""
    result = CliRunner().invoke(main, ["probe-jwks", TENANT], env=env)
    assert result.exit_code == 0, result.output
    assert f"kid={keycloak.realm(TENANT).active_kid}" in result.output
    assert "ignored: 1 key(s)" in result.output  # the enc key


def test_probe_jwks_refuses_untrusted_realm_names(env: dict[str, str]) -> None:
    """probe-jwks only fetches realm names the service would trust."""
    result = CliRunner().invoke(main, ["probe-jwks", "../admin"], env=env)
    assert result.exit_code == 2
    assert "not a trusted realm name" in result.output


def test_explain_good_token_without_printing_it(env: dict[str, str], keycloak: FakeKeycloak) -> None:
    """explain reports allow, realm, kid, alg, roles and expiry, and never prints the token."""
    token = keycloak.mint(TENANT)
    result = CliRunner().invoke(main, ["explain"], input=f"Bearer {token}\n", env=env)
    assert result.exit_code == 0, result.output
    assert "decision:   allow" in result.output
    assert f"realm:      {TENANT}" in result.output
    assert "alg:        RS256" in result.output
    assert "roles:" in result.output
    assert token not in result.output
    assert not any(token[i : i + 20] in result.output for i in range(0, len(token) - 20, 5))


def test_explain_rejection_gives_reason(env: dict[str, str], keycloak: FakeKeycloak) -> None:
    """explain of an expired token says reject with reason expired and exits 1."""
    token = keycloak.mint(TENANT, now=int(time.time()) - 3600)
    result = CliRunner().invoke(main, ["explain"], input=token, env=env)
    assert result.exit_code == 1
    assert "reason:     expired" in result.output
    assert "ago" in result.output


def test_explain_escapes_claimed_values(env: dict[str, str], keycloak: FakeKeycloak) -> None:
    """Claimed sub/azp holding line breaks or terminal escapes print escaped: one line per field."""
    from webhook.testing.keycloak import attacker_key

    forged = keycloak.mint(TENANT, sub="x\ndecision:   allow", azp="\x1b[2J\x1b[Hwiped", signing_key=attacker_key())
    result = CliRunner().invoke(main, ["explain"], input=forged, env=env)
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("decision:")] == ["decision:   reject"]
    assert "sub:        x\\u000adecision:   allow" in result.output


def test_explain_role_request(env: dict[str, str], keycloak: FakeKeycloak) -> None:
    """explain --role applies the role rule like the hook does."""
    token = keycloak.mint(TENANT)
    result = CliRunner().invoke(main, ["explain", "--role", "nobody"], input=token, env=env)
    assert "reason:     role_not_allowed" in result.output


def test_dev_refuses_non_loopback(tmp_path: object) -> None:
    """dev mode will not bind anything but loopback."""
    result = CliRunner().invoke(main, ["dev", "--host", "0.0.0.0", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "loopback only" in result.output


def test_serve_requires_keycloak_url() -> None:
    """serve without KEYCLOAK_URL stops with a message naming it."""
    result = CliRunner().invoke(main, ["serve"], env={"KEYCLOAK_URL": ""})
    assert result.exit_code == 2
    assert "KEYCLOAK_URL" in result.output


def test_python_dash_m_runs_the_cli() -> None:
    """`python -m webhook` is the same command."""
    done = subprocess.run([sys.executable, "-m", "webhook", "--help"], capture_output=True, text=True, check=True)
    assert "probe-jwks" in done.stdout


def _stderr_lines(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The process's stderr lines, read by a thread (None at end of stream), so waits can time out."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="dev stderr", daemon=True).start()
    return lines


def test_dev_mode_from_scratch_prints_a_working_token(tmp_path: Path) -> None:
    """`webhook dev` in an empty directory (its working directory, never the checkout) binds ports it
    picks itself (port 0), generates a key, prints a token and its URL, and answers 200 for it."""
    command = [sys.executable, "-m", "webhook", "dev", "--port", "0", "--issuer-port", "0"]
    with subprocess.Popen(  # noqa: S603 - fixed argv
        [*command, "--state-dir", str(tmp_path / "dev")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as process:
        try:
            lines = _stderr_lines(process)
            deadline = time.monotonic() + DEV_START_SECONDS
            token = url = ""
            while True:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                assert line is not None, "webhook dev exited before it was ready"
                if "export TOKEN=" in line:
                    token = line.split("'")[1]
                if line.startswith("auth hook:"):
                    url = line.split()[-1]
                if line.startswith("ready;"):
                    break
            response = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200
            assert response.json()["X-Hasura-Role"] == "admin-user"
            assert (tmp_path / "dev" / "dev-signing-key.pem").stat().st_mode & 0o777 == 0o600
            assert (tmp_path / "var" / "webhook.sqlite3").exists()  # the default audit file: here, not in the checkout
        finally:
            process.terminate()
            process.wait(timeout=10)
