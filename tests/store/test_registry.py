"""Model registry on real PostgreSQL and SQLite: versions, aliases, idempotence, bundle bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from textlstm.bundle import dump_json, sha256_bytes, verify_bundle
from textlstm.errors import BundleError, NotFoundError, ValidationError
from textlstm.store.blobs import missing_blobs, put_blobs
from textlstm.store.model_versions import list_model_versions
from textlstm.store.registry import (
    export_bundle,
    fetch_model,
    fetch_to_cache,
    headline_metrics,
    register_bundle,
    resolve,
    set_alias,
)
from textlstm.testing.bundles import write_fake_bundle


def test_register_is_idempotent_for_same_bytes(session: Session, fake_bundle: Path) -> None:
    mv, created = register_bundle(session=session, path=fake_bundle, name="sent", tags={"a": "1"})
    assert created and mv.version == 1 and mv.labels == ["neg", "pos"]
    assert mv.data_fingerprint == "f" * 64 and mv.metrics["validation"]["accuracy"] == 0.9
    assert headline_metrics(mv.metrics) == {"accuracy": 0.9, "macro_f1": 0.88}
    assert headline_metrics({"accuracy": 1, "macro_f1": "x"}) == {"accuracy": 1.0}
    again, created = register_bundle(
        session=session, path=fake_bundle, name="sent", tags={"b": "2"}
    )
    assert not created and again.id == mv.id and again.tags == {"a": "1", "b": "2"}
    # The same bytes under another name are a new model; blobs are shared, not duplicated.
    other, created = register_bundle(session=session, path=fake_bundle, name="other")
    assert created and other.version == 1
    assert missing_blobs(session=session, digests=[mv.bundle_sha256]) == set()


def test_versions_count_up_and_aliases_move(session: Session, tmp_path: Path) -> None:
    a = write_fake_bundle(tmp_path / "a", seed="a")
    b = write_fake_bundle(tmp_path / "b", seed="b")
    v1, _ = register_bundle(session=session, path=a, name="sent", aliases=["production"])
    v2, _ = register_bundle(session=session, path=b, name="sent", aliases=["staging"])
    assert (v1.version, v2.version) == (1, 2)
    assert resolve(session=session, ref="sent").version == 1  # production wins over latest
    assert resolve(session=session, ref="sent@staging").version == 2
    assert resolve(session=session, ref="sent@2").id == v2.id
    assert set_alias(session=session, name="sent", version=2, alias="production") == 1
    assert resolve(session=session, ref="sent@production").version == 2
    assert set_alias(session=session, name="sent", version=1, alias="production") == 2  # rollback
    assert resolve(session=session, ref="sent").version == 1


def test_bare_name_without_production_is_latest(session: Session, tmp_path: Path) -> None:
    register_bundle(session=session, path=write_fake_bundle(tmp_path / "a", seed="a"), name="m")
    register_bundle(session=session, path=write_fake_bundle(tmp_path / "b", seed="b"), name="m")
    assert resolve(session=session, ref="m").version == 2


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "not registered"),
        ("m@9", "has versions 1..1"),
        ("m@canary", "no alias 'canary'"),
        ("m@0", "versions start at 1"),
        ("bad name", "invalid model name"),
    ],
)
def test_resolve_errors(session: Session, fake_bundle: Path, ref: str, message: str) -> None:
    register_bundle(session=session, path=fake_bundle, name="m")
    with pytest.raises((NotFoundError, ValidationError), match=message):
        resolve(session=session, ref=ref)


def test_alias_to_missing_version_is_refused(session: Session, fake_bundle: Path) -> None:
    register_bundle(session=session, path=fake_bundle, name="m")
    with pytest.raises(NotFoundError, match="m@5"):
        set_alias(session=session, name="m", version=5, alias="production")
    with pytest.raises(ValidationError, match="invalid alias"):
        set_alias(session=session, name="m", version=1, alias="7up")


def test_tampered_bundle_is_refused(session: Session, fake_bundle: Path) -> None:
    (fake_bundle / "weights.safetensors").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="weights.safetensors has been modified"):
        register_bundle(session=session, path=fake_bundle, name="m")
    assert list_model_versions(session=session) == []


def test_bundle_without_labels_is_refused(session: Session, tmp_path: Path) -> None:
    bundle = write_fake_bundle(tmp_path / "b", labels=())
    with pytest.raises(BundleError, match="labels"):
        register_bundle(session=session, path=bundle, name="m")


def test_a_label_the_predictions_column_cannot_hold_is_refused(
    session: Session, tmp_path: Path
) -> None:
    ok = write_fake_bundle(tmp_path / "ok", labels=("x" * 200, "b"))
    register_bundle(session=session, path=ok, name="m")
    bundle = write_fake_bundle(tmp_path / "b", labels=("x" * 201, "b"), seed="b")
    with pytest.raises(BundleError, match="labels are at most 200 characters"):
        register_bundle(session=session, path=bundle, name="m")


def test_round_trip_through_database(session: Session, fake_bundle: Path, tmp_path: Path) -> None:
    mv, _ = register_bundle(session=session, path=fake_bundle, name="m")
    _, out = export_bundle(session=session, ref="m@1", dest=tmp_path / "exported")
    verify_bundle(out)
    for f in fake_bundle.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes()
    with pytest.raises(BundleError, match="not an empty directory"):
        export_bundle(session=session, ref="m", dest=tmp_path / "exported")

    cache = tmp_path / "cache"
    path = fetch_to_cache(session=session, sha256=mv.bundle_sha256, cache_dir=cache)
    assert path == cache / mv.bundle_sha256 and verify_bundle(path)
    assert [p.name for p in cache.iterdir()] == [mv.bundle_sha256]  # no temp dirs left over
    # A damaged cached copy is detected and replaced.
    (path / "weights.safetensors").write_bytes(b"rot")
    assert fetch_to_cache(session=session, sha256=mv.bundle_sha256, cache_dir=cache) == path
    verify_bundle(path)


def test_fetch_refuses_path_traversal(session: Session, tmp_path: Path) -> None:
    evil = b"pwned"
    manifest = dump_json(
        {
            "format": "textlstm-bundle",
            "format_version": 1,
            "files": {"../escape.txt": {"sha256": sha256_bytes(evil), "size": len(evil)}},
        }
    )
    digest = sha256_bytes(manifest)
    put_blobs(session=session, blobs={digest: manifest, sha256_bytes(evil): evil})
    with pytest.raises(BundleError, match="unsafe file name"):
        fetch_to_cache(session=session, sha256=digest, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(BundleError, match="not a sha256"):
        fetch_to_cache(session=session, sha256="../x", cache_dir=tmp_path / "cache")
    with pytest.raises(NotFoundError):
        fetch_to_cache(session=session, sha256="0" * 64, cache_dir=tmp_path / "cache")


def test_corrupt_blob_in_database_is_detected(
    session: Session, fake_bundle: Path, tmp_path: Path
) -> None:
    from sqlalchemy import update

    from textlstm.store.models import Blob

    mv, _ = register_bundle(session=session, path=fake_bundle, name="m")
    manifest = json.loads((fake_bundle / "manifest.json").read_bytes())
    weights_sha = manifest["files"]["weights.safetensors"]["sha256"]
    session.execute(update(Blob).where(Blob.sha256 == weights_sha).values(data=b"bitrot"))
    with pytest.raises(BundleError, match="does not match its sha256"):
        fetch_to_cache(session=session, sha256=mv.bundle_sha256, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c" / mv.bundle_sha256).exists()


def test_fetch_model_resolves_then_caches(
    session: Session, fake_bundle: Path, tmp_path: Path
) -> None:
    register_bundle(session=session, path=fake_bundle, name="m", aliases=["production"])
    mv, path = fetch_model(session=session, ref="m", cache_dir=tmp_path / "cache")
    assert mv.version == 1 and path.name == mv.bundle_sha256
    assert (path / "config.json").read_bytes() == (fake_bundle / "config.json").read_bytes()
