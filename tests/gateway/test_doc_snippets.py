"""The JavaScript and Go snippets of docs/gateway.md use only what the published schema
(docs/reference/openapi.json, itself checked against the app) declares: every path they call,
every request field they send, every response field they read, and the job statuses they
wait for. Checked rather than generated: two hand-written idiomatic snippets are shorter and
clearer than a generator's output, and this check fails as soon as the API and they disagree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from textlstm.wire.events import FINAL_STATUSES

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "gateway.md"
SCHEMA = json.loads((ROOT / "docs" / "reference" / "openapi.json").read_text(encoding="utf-8"))
BLOCK = re.compile(r"^```(javascript|go)\n(.*?)^```", re.S | re.M)


def _snippets() -> dict[str, str]:
    found = dict(BLOCK.findall(PAGE.read_text(encoding="utf-8")))
    assert set(found) == {"javascript", "go"}, "docs/gateway.md should hold both snippets"
    return found


def _resolve(node: Any) -> Any:
    """`node` with every `$ref` into components replaced by its target, recursively."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return _resolve(SCHEMA["components"]["schemas"][name])
        return {k: _resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v) for v in node]
    return node


def _properties(node: Any) -> dict[str, Any]:
    """Every property an object schema (or any branch of an anyOf / oneOf / allOf) declares."""
    props: dict[str, Any] = {}
    if isinstance(node, dict):
        props.update(node.get("properties", {}))
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(key, []):
                props.update(_properties(branch))
    return props


def _template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


OPERATIONS = {
    (method.upper(), _template(path)): op
    for path, item in SCHEMA["paths"].items()
    for method, op in item.items()
}


def used_paths(code: str) -> set[str]:
    """The API paths a snippet builds: JavaScript template literals (`${api}/v1/jobs/${id}`)
    and Go concatenations (`api+"/v1/jobs/"+id`), placeholders as `{}`."""
    paths = set()
    for literal in re.findall(r"`([^`]*\$\{api\}[^`]*)`", code):
        paths.add(re.sub(r"\$\{[^}]+\}", "{}", literal.replace("${api}", "")))
    for chain in re.findall(r'\bapi((?:\+(?:"[^"]*"|[A-Za-z_][\w.]*))+)', code):
        parts = [p for p in chain.split("+") if p]
        paths.add("".join(p.strip('"') if p.startswith('"') else "{}" for p in parts))
    return {p.split("?")[0] for p in paths}


def sent_fields(code: str) -> set[str]:
    """Keys of the JSON bodies a snippet sends: `JSON.stringify({ k: … })`, or a Go raw
    string holding a JSON object."""
    keys: set[str] = set()
    for body in re.findall(r"JSON\.stringify\(\{(.*?)\}\)", code, re.S):
        keys |= set(re.findall(r"(\w+)\s*:", re.sub(r'"[^"]*"', '""', body)))
    for raw in re.findall(r"`(\{.*?\})`", code, re.S):
        keys |= set(json.loads(raw))
    return keys


def read_fields(code: str) -> set[str]:
    """Response fields a snippet reads: JavaScript destructuring of `.json()`, `(await
    r.json()).f`, `v.f` on a variable assigned a `.json()` result; Go `json:"f"` tags."""
    fields = set(re.findall(r'json:"(\w+)"', code))
    for names in re.findall(r"const \{([^}]*)\} = await \w+\.json\(\)", code):
        fields |= {n.strip() for n in names.split(",")}
    fields |= set(re.findall(r"\(await \w+\.json\(\)\)\.(\w+)", code))
    for var in re.findall(r"(\w+) = await \(await fetch\(.*?\)\)\.json\(\)", code):
        fields |= set(re.findall(rf"\b{var}\.(\w+)", code))
    return fields


def problems(code: str) -> list[str]:
    """What a snippet uses that the schema does not declare."""
    out: list[str] = []
    ops = [op for (_, path), op in OPERATIONS.items() if path in used_paths(code)]
    for path in used_paths(code):
        if not any(p == path for _, p in OPERATIONS):
            out.append(f"path {path} is not in the schema")
    accepted: dict[str, Any] = {}
    returned: dict[str, Any] = {}
    for op in ops:
        for content in op.get("requestBody", {}).get("content", {}).values():
            accepted |= _properties(_resolve(content["schema"]))
        for response in op.get("responses", {}).values():
            for content in response.get("content", {}).values():
                returned |= _properties(_resolve(content.get("schema", {})))
    out += [f"sends {f!r}, not a request field" for f in sent_fields(code) - set(accepted)]
    out += [f"reads {f!r}, not a response field" for f in read_fields(code) - set(returned)]
    waits = re.findall(r"\[([^\]]*)\]\.includes\(\w+\.status\)", code)
    enum = set(_resolve(SCHEMA["components"]["schemas"]["JobDoc"])["properties"]["status"]["enum"])
    for listed in waits:
        statuses = set(re.findall(r'"(\w+)"', listed))
        out += [f"waits for status {s!r}, not one the schema lists" for s in statuses - enum]
        if statuses != set(FINAL_STATUSES):
            out.append(f"waits for {sorted(statuses)}, not every final status")
    return out


@pytest.mark.parametrize("lang", ["javascript", "go"])
def test_the_snippet_uses_only_what_the_schema_declares(lang: str) -> None:
    code = _snippets()[lang]
    assert len(used_paths(code)) >= 2 and sent_fields(code) and read_fields(code), (
        f"the {lang} snippet's calls were not found: has its shape changed? {used_paths(code)}"
    )
    assert problems(code) == []


def test_the_check_finds_what_the_schema_lacks() -> None:
    """A snippet edited against an API that does not exist is caught, in both languages."""
    js, go = _snippets()["javascript"], _snippets()["go"]
    bad_js = (
        js.replace("/v1/jobs/${job_id}/results", "/v1/jobs/${job_id}/rows")
        .replace("texts: [", "inputs: [")
        .replace("const { job_id }", "const { id }")
        .replace('"cancelled"]', '"aborted"]')
    )
    found = problems(bad_js)
    assert "path /v1/jobs/{}/rows is not in the schema" in found
    assert "sends 'inputs', not a request field" in found
    assert "reads 'id', not a response field" in found
    assert "waits for status 'aborted', not one the schema lists" in found
    bad_go = go.replace('json:"job_id"', 'json:"jobId"').replace('{"texts"', '{"text"')
    assert set(problems(bad_go)) == {
        "reads 'jobId', not a response field",
        "sends 'text', not a request field",
    }
