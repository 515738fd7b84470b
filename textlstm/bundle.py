"""The model bundle: a directory whose every file is pinned by sha256 in `manifest.json`.

Layout::

    bundle/
      manifest.json        {"format": "textlstm-bundle", "format_version": 1,
                            ["kind": "language-model",]
                            "files": {name: {"sha256": hex, "size": bytes}}}
      weights.safetensors  state_dict tensors (safetensors: loading never executes code)
      config.json          model + tokenizer config, labels, temperature, training args, lineage
      tokenizer.json       vocabulary and normalisation settings
      metrics.json         validation metrics
      *.png                plots (optional, hashed like the rest)

The bundle's identity (`bundle_digest`) is the sha256 of `manifest.json`: since the manifest holds
the hash of every other file, two bundles with the same digest have the same bytes. A manifest
without `kind` is a classifier (every bundle before language models existed); a language model
(`textlstm-admin pretrain`) says `"kind": "language-model"` in its manifest, which the hashes
cover, so neither loader can be handed the other's bundle by mistake. This module
imports no torch so the registry and the producer can verify bundles cheaply.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from textlstm.errors import BundleError

FORMAT = "textlstm-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
METRICS = "metrics.json"
REQUIRED = (WEIGHTS, CONFIG, TOKENIZER, METRICS)
CLASSIFIER = "classifier"
LANGUAGE_MODEL = "language-model"
KINDS = (CLASSIFIER, LANGUAGE_MODEL)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dump_json(obj: Any) -> bytes:
    """Canonical JSON (sorted keys, fixed separators) so equal content gives equal hashes."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def write_bundle(
    out_dir: str | Path,
    files: Mapping[str, bytes],
    *,
    overwrite: bool = False,
    kind: str = CLASSIFIER,
) -> str:
    """Write `files` plus a manifest atomically (temp dir + rename); return the bundle digest.

    `files` must contain every name in REQUIRED. A classifier's manifest leaves `kind` out, so
    its bytes (and digest) are what they were before kinds existed. Writing to a sibling temp
    dir first means a crash never leaves a half-written bundle that looks complete.
    """
    out = Path(out_dir)
    if kind not in KINDS:
        raise BundleError(f"cannot write bundle {out}: unknown kind {kind!r}")
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise BundleError(f"cannot write bundle {out}: missing {', '.join(missing)}")
    for name in files:
        if name == MANIFEST or "/" in name or "\\" in name or name.startswith("."):
            raise BundleError(f"cannot write bundle {out}: invalid file name {name!r}")
    if out.exists() and not overwrite:
        if any(out.iterdir()):
            raise BundleError(f"output directory {out} exists and is not empty (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **({} if kind == CLASSIFIER else {"kind": kind}),
            "files": {
                name: {"sha256": sha256_bytes(data), "size": len(data)}
                for name, data in sorted(files.items())
            },
        }
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        manifest_bytes = dump_json(manifest)
        (tmp / MANIFEST).write_bytes(manifest_bytes)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sha256_bytes(manifest_bytes)


def read_manifest(path: str | Path) -> dict[str, Any]:
    bundle = Path(path)
    if not bundle.is_dir():
        raise BundleError(f"model bundle {bundle} not found (expected a directory)")
    mpath = bundle / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"model bundle {bundle} is incomplete: {MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"model bundle {bundle}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"model bundle {bundle}: {MANIFEST} is not a textlstm manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"model bundle {bundle}: format_version {manifest.get('format_version')!r} is not "
            f"supported (this textlstm reads {FORMAT_VERSION})"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"model bundle {bundle}: {MANIFEST} has no 'files' table")
    return manifest


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Check every file listed in the manifest against its size and sha256; return the manifest.

    Raises BundleError naming the first missing, resized or altered file. Files not listed in the
    manifest are never read by the loader, so they are ignored here.
    """
    bundle = Path(path)
    manifest = read_manifest(bundle)
    files: dict[str, Any] = manifest["files"]
    for name in REQUIRED:
        if name not in files:
            raise BundleError(f"model bundle {bundle} is incomplete: manifest lists no {name}")
    for name, meta in files.items():
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise BundleError(f"model bundle {bundle}: manifest names an unsafe path {name!r}")
        fpath = bundle / name
        if not fpath.is_file():
            raise BundleError(f"model bundle {bundle} is incomplete: {name} is missing")
        if fpath.stat().st_size != meta.get("size"):
            raise BundleError(
                f"model bundle {bundle}: {name} has been modified (size differs from manifest)"
            )
        if sha256_file(fpath) != meta.get("sha256"):
            raise BundleError(
                f"model bundle {bundle}: {name} has been modified (sha256 differs from manifest)"
            )
    return manifest


def bundle_kind(manifest: Mapping[str, Any]) -> str:
    """What a (verified) manifest holds: CLASSIFIER when it names no kind."""
    return str(manifest.get("kind", CLASSIFIER))


def expect_kind(path: str | Path, manifest: Mapping[str, Any], kind: str) -> None:
    """Refuse, in one line, a bundle of another kind than the loader reads."""
    found = bundle_kind(manifest)
    if found != kind:
        hint = {
            LANGUAGE_MODEL: " (made by `textlstm-admin pretrain`: pass it to `train --init`)",
            CLASSIFIER: " (made by `textlstm-admin train`)",
        }.get(found, "")
        raise BundleError(f"model bundle {path} is a {found} bundle, not a {kind}{hint}")


def bundle_digest(path: str | Path) -> str:
    """sha256 of the manifest: the content address of the whole bundle (call verify first)."""
    mpath = Path(path) / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"model bundle {path} is incomplete: {MANIFEST} is missing")
    return sha256_file(mpath)


def read_json(path: str | Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((Path(path) / name).read_bytes())
    except FileNotFoundError:
        raise BundleError(f"model bundle {path} is incomplete: {name} is missing") from None
    except ValueError as exc:
        raise BundleError(f"model bundle {path}: {name} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BundleError(f"model bundle {path}: {name} must hold a JSON object")
    return data


def bundle_files(path: str | Path) -> dict[str, bytes]:
    """All files of a verified bundle, manifest included: what the registry stores."""
    bundle = Path(path)
    manifest = verify_bundle(bundle)
    out = {name: (bundle / name).read_bytes() for name in manifest["files"]}
    out[MANIFEST] = (bundle / MANIFEST).read_bytes()
    return out
