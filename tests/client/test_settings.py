"""Settings: environment prefix, URL rewriting, masking, and nothing built at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from textlstm.settings import Settings, get_settings, mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+psycopg://app:s3cret@db:5432/tl", "postgresql+psycopg://app:***@db:5432/tl"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "postgresql+psycopg://db/tl?password=s3cret&x=1",
            "postgresql+psycopg://db/tl?password=***&x=1",
        ),
        ("sqlite:///./textlstm.db", "sqlite:///./textlstm.db"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cret" not in mask_url(url)


def test_env_prefix_dotenv_and_psycopg_rewrite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("TEXTLSTM_MESSAGE_MAX_ITEMS=7\n")
    monkeypatch.setenv("TEXTLSTM_DATABASE_URL", "postgresql://u:pw@h/db")
    s = Settings()
    assert s.database_url == "postgresql+psycopg://u:pw@h/db"
    assert s.message_max_items == 7 and s.database_configured
    assert "pw" not in repr(s) and "***" in repr(s)
    monkeypatch.delenv("TEXTLSTM_DATABASE_URL")
    assert not Settings(_env_file=None).database_configured  # type: ignore[call-arg]


def test_get_settings_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def test_imports_build_nothing_and_need_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import textlstm.client, textlstm.settings, textlstm.wire.messages\n"
        "import textlstm.store.registry, textlstm.store.jobs, textlstm.store.predictions\n"
        "import textlstm.store.results, textlstm.store.db\n"
        "import textlstm.cli.db, textlstm.cli.models, textlstm.cli.jobs, textlstm.cli.results\n"
        "from click.testing import CliRunner\n"
        "from textlstm.cli import cli\n"
        "for args in (['db'], ['models'], ['jobs'], ['results'], ['models', 'register'],\n"
        "             ['jobs', 'list'], ['db', 'upgrade']):\n"
        "    r = CliRunner().invoke(cli, [*args, '--help'])\n"
        "    assert r.exit_code == 0 and 'Usage' in r.output, (args, r.output)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'celery' not in sys.modules, 'celery imported at import time'\n"
        "assert textlstm.settings.get_settings.cache_info().currsize == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert not (tmp_path / "textlstm.db").exists()
