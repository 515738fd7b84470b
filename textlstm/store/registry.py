"""The model registry: register bundles, resolve references, move aliases, materialise bundles.

Every file of a bundle (manifest included) is stored as a content-addressed blob, and a version
row points at its manifest's sha256 (the bundle digest). So a worker with nothing but the
database URL can fetch any version, and `fetch_to_cache` unpacks it once per machine into
``<cache>/<digest>/``: written to a temp dir, verified against the manifest, then renamed into
place, so a crash or a concurrent fetch never leaves a half-written bundle that looks complete.
Weights are never loaded here (no torch).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from textlstm.bundle import (
    CONFIG,
    FORMAT,
    MANIFEST,
    METRICS,
    bundle_digest,
    bundle_files,
    sha256_bytes,
    verify_bundle,
)
from textlstm.errors import BundleError, NotFoundError, ValidationError
from textlstm.store import blobs, model_versions
from textlstm.store.models import ModelVersion
from textlstm.wire.limits import LABEL_CHARS
from textlstm.wire.messages import unstorable
from textlstm.wire.refs import DEFAULT_ALIAS, ModelRef, check_alias, check_name, parse_model_ref

# Bundle file names a manifest may list: flat, no leading dot, nothing that can climb a path.
SAFE_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")


def check_tags(tags: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG_KEY_RE.match(key):
            raise ValidationError(f"invalid tag key {key!r}: letters, digits and ._:/- only")
        if not isinstance(value, str) or len(value) > 256:
            raise ValidationError(f"tag {key!r}: value must be a string of at most 256 chars")
        out[key] = value
    return out


def _lineage(path: Path, config: dict[str, Any]) -> tuple[list[str], str | None]:
    labels = config.get("labels")
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(x, str) and x for x in labels)
        or len(set(labels)) != len(labels)
    ):
        raise BundleError(f"model bundle {path}: {CONFIG} needs 'labels', a list of unique names")
    long = [x for x in labels if len(x) > LABEL_CHARS or unstorable(x)]
    if long:
        # Every prediction row stores its label: one that the column cannot hold would fail
        # every batch of this model, so it is refused at registration.
        raise BundleError(
            f"model bundle {path}: label {long[0][:40]!r}... is not storable: labels are at most "
            f"{LABEL_CHARS} characters, with no NUL or lone surrogate"
        )
    data = config.get("data")
    fingerprint = data.get("fingerprint") if isinstance(data, dict) else None
    if not isinstance(fingerprint, str) or len(fingerprint) > 64:
        fingerprint = None
    return labels, fingerprint


def headline_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Accuracy and macro-F1 from metrics.json: the trainer nests them under "validation";
    flat files (older or hand-made bundles) keep them at the top level."""
    source = metrics.get("validation") if isinstance(metrics.get("validation"), dict) else metrics
    return {
        key: float(value)
        for key in ("accuracy", "macro_f1")
        if isinstance(value := source.get(key), int | float) and not isinstance(value, bool)
    }


def register_bundle(
    *,
    session: Session,
    path: str | Path,
    name: str,
    aliases: Iterable[str] = (),
    tags: Mapping[str, str] | None = None,
) -> tuple[ModelVersion, bool]:
    """Register the bundle at `path` as the next version of `name`; return (version, created).

    The bundle is verified first (a file failing its hash → BundleError, nothing stored). The
    same bytes under the same name return the existing version with created=False; requested
    aliases are still pointed at it and tags merged, so re-running a promotion is harmless.
    The caller commits.
    """
    check_name(name)
    alias_list = [check_alias(a) for a in aliases]
    tag_map = check_tags(tags or {})
    bundle = Path(path)
    verify_bundle(bundle)
    digest = bundle_digest(bundle)

    mv = model_versions.find_model_version_by_digest(
        session=session, name=name, bundle_sha256=digest
    )
    created = mv is None
    if mv is None:
        files = bundle_files(bundle)
        config = json.loads(files[CONFIG])
        metrics = json.loads(files[METRICS])
        if not isinstance(config, dict) or not isinstance(metrics, dict):
            raise BundleError(f"model bundle {bundle}: {CONFIG} and {METRICS} must be objects")
        labels, fingerprint = _lineage(bundle, config)
        blobs.put_blobs(session=session, blobs={sha256_bytes(b): b for b in files.values()})
        mv = model_versions.add_model_version(
            session=session,
            name=name,
            bundle_sha256=digest,
            bundle_size=sum(len(b) for b in files.values()),
            labels=labels,
            config=config,
            metrics=metrics,
            data_fingerprint=fingerprint,
            tags=tag_map,
        )
    elif tag_map and any(mv.tags.get(k) != v for k, v in tag_map.items()):
        mv.tags = {**mv.tags, **tag_map}
        session.flush()
    for alias in alias_list:
        model_versions.set_alias(session=session, name=name, alias=alias, version=mv.version)
    return mv, created


def resolve(*, session: Session, ref: str | ModelRef) -> ModelVersion:
    """`name@3` → version 3; `name@alias` → the alias target; bare `name` → its `production`
    alias if set, else its latest version. NotFoundError says what exists instead."""
    mref = parse_model_ref(ref) if isinstance(ref, str) else ref
    if mref.version is not None:
        mv = model_versions.get_model_version(session=session, name=mref.name, version=mref.version)
        if mv is None:
            raise NotFoundError(f"model {mref} not found{_known_versions(session, mref.name)}")
        return mv
    alias = mref.alias or DEFAULT_ALIAS
    row = model_versions.get_alias(session=session, name=mref.name, alias=alias)
    if row is not None:
        mv = model_versions.get_model_version(session=session, name=mref.name, version=row.version)
        if mv is not None:
            return mv
    if mref.alias is None:
        latest = model_versions.latest_model_version(session=session, name=mref.name)
        if latest is not None:
            return latest
        raise NotFoundError(f"model {mref.name!r} is not registered")
    known = ", ".join(a.alias for a in model_versions.list_aliases(session=session, name=mref.name))
    raise NotFoundError(
        f"model {mref} not found: {mref.name!r} has no alias {mref.alias!r}"
        + (f" (aliases: {known})" if known else "")
    )


def _known_versions(session: Session, name: str) -> str:
    versions = [mv.version for mv in model_versions.list_model_versions(session=session, name=name)]
    if not versions:
        return f": {name!r} is not registered"
    return f" ({name!r} has versions {versions[0]}..{versions[-1]})"


def set_alias(*, session: Session, name: str, version: int, alias: str) -> int | None:
    """Point `name@alias` at an existing version; return the version it pointed at before."""
    check_name(name)
    check_alias(alias)
    if model_versions.get_model_version(session=session, name=name, version=version) is None:
        raise NotFoundError(f"model {name}@{version} not found{_known_versions(session, name)}")
    return model_versions.set_alias(session=session, name=name, alias=alias, version=version)


def aliases_by_version(
    *, session: Session, name: str | None = None
) -> dict[tuple[str, int], list[str]]:
    out: dict[tuple[str, int], list[str]] = {}
    for row in model_versions.list_aliases(session=session, name=name):
        out.setdefault((row.name, row.version), []).append(row.alias)
    return out


def version_summary(
    mv: ModelVersion, aliases: Mapping[tuple[str, int], list[str]]
) -> dict[str, Any]:
    """One version as `textlstm-admin models list --json` prints it and `GET /v1/models`
    returns it; `aliases` from `aliases_by_version` (one query for a whole list)."""
    return {
        "name": mv.name,
        "version": mv.version,
        "ref": f"{mv.name}@{mv.version}",
        "aliases": aliases.get((mv.name, mv.version), []),
        "labels": mv.labels,
        "metrics": headline_metrics(mv.metrics),
        "bundle_sha256": mv.bundle_sha256,
        "bundle_size": mv.bundle_size,
        "tags": mv.tags,
        "created_at": mv.created_at.isoformat(),
    }


def version_details(*, session: Session, mv: ModelVersion) -> dict[str, Any]:
    """One version as `textlstm-admin models show --json` prints it and
    `GET /v1/models/{ref}` returns it: the summary's fields plus every metric and the config."""
    return {
        "name": mv.name,
        "version": mv.version,
        "aliases": aliases_by_version(session=session, name=mv.name).get((mv.name, mv.version), []),
        "bundle_sha256": mv.bundle_sha256,
        "bundle_size": mv.bundle_size,
        "labels": mv.labels,
        "metrics": headline_metrics(mv.metrics),
        "all_metrics": mv.metrics,
        "data_fingerprint": mv.data_fingerprint,
        "tags": mv.tags,
        "created_at": mv.created_at.isoformat(),
        "config": mv.config,
    }


# --------------------------------------------------------------------------------------------
# Materialising a bundle from the database


def _load_manifest(session: Session, digest: str) -> tuple[bytes, dict[str, Any]]:
    if not HEX64_RE.match(digest):
        raise BundleError(f"bundle digest {digest!r} is not a sha256 hex string")
    raw = blobs.get_blob(session=session, sha256=digest)
    if raw is None:
        raise NotFoundError(f"bundle {digest[:12]} is not stored in the database")
    if sha256_bytes(raw) != digest:
        raise BundleError(f"bundle {digest[:12]}: stored manifest does not match its sha256")
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise BundleError(f"bundle {digest[:12]}: stored manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"bundle {digest[:12]}: stored manifest is not a textlstm manifest")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"bundle {digest[:12]}: stored manifest lists no files")
    for fname, meta in files.items():
        # Refuse path traversal before touching the disk: names must be flat and plain.
        if not isinstance(fname, str) or not SAFE_FILE_RE.match(fname) or fname == MANIFEST:
            raise BundleError(f"bundle {digest[:12]}: refusing unsafe file name {fname!r}")
        if not isinstance(meta, dict) or not HEX64_RE.match(str(meta.get("sha256", ""))):
            raise BundleError(f"bundle {digest[:12]}: bad manifest entry for {fname!r}")
    return raw, manifest


def _materialise(session: Session, digest: str, target: Path) -> None:
    """Write the bundle into a fresh sibling temp dir, verify it, rename it to `target`."""
    raw, manifest = _load_manifest(session, digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        for fname, meta in manifest["files"].items():
            data = blobs.get_blob(session=session, sha256=meta["sha256"])
            if data is None:
                raise BundleError(
                    f"bundle {digest[:12]}: file {fname} is missing from the database"
                )
            if sha256_bytes(data) != meta["sha256"]:
                raise BundleError(f"bundle {digest[:12]}: stored {fname} does not match its sha256")
            (tmp / fname).write_bytes(data)
        (tmp / MANIFEST).write_bytes(raw)
        verify_bundle(tmp)
        if bundle_digest(tmp) != digest:
            raise BundleError(f"bundle {digest[:12]}: digest mismatch after extraction")
        os.replace(tmp, target)  # atomic; fails if target is a non-empty dir
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_valid_copy(path: Path, digest: str) -> bool:
    try:
        verify_bundle(path)
        return bundle_digest(path) == digest
    except BundleError:
        return False


def fetch_to_cache(*, session: Session, sha256: str, cache_dir: str | Path) -> Path:
    """Return ``cache_dir/<sha256>``, unpacking the bundle from the database if needed.

    An existing copy is re-verified (hashing a few MB is cheap next to loading weights) and
    replaced if damaged. Concurrent fetches by several processes are safe: each writes its own
    temp dir and the first rename wins.
    """
    cache = Path(cache_dir).expanduser()
    _load_manifest(session, sha256)  # validates the digest before it becomes a path
    target = cache / sha256
    if target.exists():
        if _is_valid_copy(target, sha256):
            return target
        shutil.rmtree(target, ignore_errors=True)
    try:
        _materialise(session, sha256, target)
    except OSError:
        if _is_valid_copy(target, sha256):  # another process won the race
            return target
        raise
    return target


def export_bundle(*, session: Session, ref: str, dest: str | Path) -> tuple[ModelVersion, Path]:
    """Write the bundle of `ref` into `dest`, which must not exist or be an empty directory."""
    mv = resolve(session=session, ref=ref)
    out = Path(dest)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"export destination {out} exists and is not an empty directory")
    if out.exists():
        out.rmdir()
    _materialise(session, mv.bundle_sha256, out)
    return mv, out


def fetch_model(
    *, session: Session, ref: str | ModelRef, cache_dir: str | Path
) -> tuple[ModelVersion, Path]:
    """Resolve `ref` and make its bundle available locally: what a worker calls per model."""
    mv = resolve(session=session, ref=ref)
    return mv, fetch_to_cache(session=session, sha256=mv.bundle_sha256, cache_dir=cache_dir)
