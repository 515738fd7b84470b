"""TEXTLSTM_API_TOKENS_FILE (a Docker secret): its entries are admitted alongside
TEXTLSTM_API_TOKENS's, comments and blank lines are skipped, and a bad line stops the gateway
at start-up with one line naming the file and the line, never the line's text."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from textlstm.errors import SettingsError
from textlstm.gateway.app import create_app
from textlstm.gateway.auth import hash_token
from textlstm.settings import Settings
from textlstm.testing.processes import CLI

FILE_TOKEN = "file-token-" + "f" * 30
ENV_TOKEN = "env-token-" + "e" * 30


def _settings(db_url: str, redis_url: str, **values: object) -> Settings:
    return Settings(database_url=db_url, broker_url=redis_url, _env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-tokens"
    path.write_text(
        "# gateway tokens (textlstm-admin api-token)\n"
        "\n"
        f"  {hash_token(FILE_TOKEN)}:submit   # the batch producer\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def api(db_url: str, redis_url: str, tokens_file: Path) -> Iterator[TestClient]:
    settings = _settings(
        db_url,
        redis_url,
        api_tokens=f"{hash_token(ENV_TOKEN)}:read",
        api_tokens_file=tokens_file,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_tokens_from_the_file_and_the_variable_are_both_admitted(api: TestClient) -> None:
    def models(token: str) -> int:
        return api.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code

    assert models(FILE_TOKEN) == 200
    assert models(ENV_TOKEN) == 200
    assert models("not-a-token") == 401
    # Each keeps its own scope: the variable's entry is read-only.
    cancel = f"/v1/jobs/{'0' * 8}-0000-0000-0000-{'0' * 12}/cancel"
    assert api.post(cancel, headers={"Authorization": f"Bearer {ENV_TOKEN}"}).status_code == 403
    assert api.post(cancel, headers={"Authorization": f"Bearer {FILE_TOKEN}"}).status_code == 404


def test_the_file_alone_is_enough(db_url: str, redis_url: str, tokens_file: Path) -> None:
    settings = _settings(db_url, redis_url, api_tokens_file=str(tokens_file))
    assert [e.scope for e in settings.api_token_entries] == ["submit"]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (FILE_TOKEN, "must be <sha256 hex digest"),  # the token pasted in place of its entry
        (f"{hash_token(FILE_TOKEN)}:admin", "scope must be one of read, submit"),
        (f"{hash_token(FILE_TOKEN)[:-1]}:read", "must be <sha256 hex digest"),
    ],
)
def test_a_bad_line_is_named_by_file_and_number_without_its_text(
    tmp_path: Path, tokens_file: Path, line: str, says: str
) -> None:
    with tokens_file.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
    with pytest.raises(SettingsError) as raised:
        Settings(api_tokens_file=tokens_file, _env_file=None)  # type: ignore[call-arg]
    (message,) = raised.value.problems
    assert message.startswith(f"TEXTLSTM_API_TOKENS_FILE: {tokens_file}, line 4"), message
    assert says in message
    assert FILE_TOKEN not in message and hash_token(FILE_TOKEN)[:-1] not in message


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TEXTLSTM_API_TOKENS_FILE: .*cannot read it"):
        Settings(api_tokens_file=tmp_path / "absent", _env_file=None)  # type: ignore[call-arg]


def test_serve_api_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "api-tokens"
    bad.write_text("# one good, one bad\n" + "a" * 64 + ":read\nnot an entry\n", encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "TEXTLSTM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "TEXTLSTM_API_TOKENS_FILE": str(bad),
    }
    out = subprocess.run(
        [*CLI, "serve-api", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{bad}, line 3" in lines[0], out.stderr
    assert "Traceback" not in out.stderr and "not an entry" not in out.stderr
