"""The documentation: the MkDocs site builds with --strict (no broken link, anchor or included
file), its generated reference pages list every setting and every command, the benchmark
figures it includes still cover whole tables, and the README stays short with working links."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from textlstm.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 220
#: Nothing in the docs may point outside the repository.
# Names of places outside the repository that docs once cited; spelled in parts so this file
# does not cite them itself.
OUTSIDE = ("LIMITS" + ".md", ".." + "/shared", "/" + "work/", '"shar' + 'ed" / "data"')


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, f"mkdocs build --strict failed ({took:.1f}s):\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def _cells(row: str) -> list[str]:
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in cells]


def _expected_default(default: object) -> str:
    if default is None or default == "":
        return "unset"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def test_settings_page_lists_every_setting_with_its_default(site: Path) -> None:
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", _page(site, "reference/settings"), re.S):
        cells = _cells(row)
        if cells and cells[0].startswith("TEXTLSTM_"):
            rows[cells[0].removeprefix("TEXTLSTM_")] = cells
    fields = Settings.model_fields
    assert set(rows) == {name.upper() for name in fields}
    for name, field in fields.items():
        _variable, kind, default, meaning = rows[name.upper()]
        assert default == _expected_default(field.default), (name, default)
        assert kind, name
        assert len(meaning) > 10, f"TEXTLSTM_{name.upper()} has no description"


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
    return paths


def test_cli_page_documents_every_command_and_option(site: Path) -> None:
    from textlstm.cli import cli

    page = _page(site, "reference/cli")
    assert "Sentinel" not in page, "a Click default leaked into the CLI page as Sentinel.UNSET"
    ctx = click.Context(cli)
    checked = 0
    for path in _command_paths(cli):
        anchor = "textlstm-admin-" + "-".join(path)
        assert f'id="{anchor}"' in page, f"`textlstm-admin {' '.join(path)}` is not documented"
        command: click.Command = cli
        for name in path:
            command = command.get_command(ctx, name)  # type: ignore[attr-defined]
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert f"<code>{param.opts[0]}" in page, (path, param.opts[0])
                checked += 1
    assert checked > 50, checked


def test_readme_anchors_into_the_site_exist(site: Path) -> None:
    for target in _readme_links():
        path, _, anchor = target.partition("#")
        if anchor and path.startswith("docs/") and path.endswith(".md"):
            page = path.removeprefix("docs/").removesuffix(".md")
            page = "" if page == "index" else page
            text = (site / page / "index.html").read_text(encoding="utf-8")
            assert f'id="{anchor}"' in text, target


def _readme_links() -> list[str]:
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text(encoding="utf-8"))
    return [link for link in links if not re.match(r"[a-z]+:", link) and link[0] != "#"]


def test_readme_is_short_and_its_links_resolve() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail to docs/"
    links = _readme_links()
    assert links, "README.md should link into docs/"
    for link in links:
        assert (ROOT / link.partition("#")[0]).exists(), f"README.md links to missing {link}"


def test_no_page_refers_outside_the_repository() -> None:
    sources = [README, ROOT / "mkdocs.yml", *DOCS.rglob("*.md"), *DOCS.rglob("*.py")]
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for needle in OUTSIDE:
            assert needle not in text, f"{source.relative_to(ROOT)} mentions {needle}"


def test_no_tracked_file_refers_outside_the_repository() -> None:
    """Benchmark results included: a report records DATA/…, not where the data was."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if not path.is_file():
            continue
        data = path.read_bytes()
        for needle in OUTSIDE:
            assert needle.encode() not in data, f"{name.decode()} mentions {needle}"


def test_included_benchmark_ranges_cover_whole_tables() -> None:
    """`--8<-- "file.md:A:B"` includes lines A..B of bench/results/file.md: when a benchmark
    rewrites its file, a range that no longer starts and ends on a whole table fails here."""
    includes = [
        (page, *match)
        for page in DOCS.rglob("*.md")
        for match in re.findall(r'^--8<-- "([^":]+):(\d+):(\d+)"$', page.read_text(), re.M)
    ]
    assert includes
    for page, name, first, last in includes:
        lines = (ROOT / "bench" / "results" / name).read_text(encoding="utf-8").splitlines()
        a, b = int(first), int(last)
        assert 1 <= a <= b <= len(lines), (page.name, name, a, b)
        chunk = lines[a - 1 : b]
        if chunk[0].startswith("|"):
            where = f"{page.name} includes {name}:{a}:{b}"
            assert all(line.startswith("|") for line in chunk), f"{where}: not one table"
            assert a == 1 or not lines[a - 2].startswith("|"), f"{where}: starts mid-table"
            assert b == len(lines) or not lines[b].startswith("|"), f"{where}: stops mid-table"
            assert set(chunk[1].replace("|", "").strip()) <= set("-: "), f"{where}: no header"
        else:
            assert all(line.strip() for line in chunk[:1]), f"{page.name}: {name}:{a} is blank"
