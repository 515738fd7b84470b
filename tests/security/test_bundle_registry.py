"""Issue 6 item 3, the registry side (tampered weights, label-count mismatch and a pickle
payload in a bundle directory are in tests/unit/test_bundle.py): a bundle whose bytes do not
match the hash its registry row names is refused with a clear error and nothing is loaded, and
a damaged local cache copy is replaced from the database rather than trusted, and a row that
points at another valid bundle whose labels disagree with the row is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from textlstm.bundle import MANIFEST, WEIGHTS, sha256_bytes
from textlstm.errors import BundleError
from textlstm.serving.models import ModelCache, ModelUnavailable
from textlstm.store.models import Blob, ModelVersion
from textlstm.store.registry import fetch_model, register_bundle


class Boom:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        import os

        return (os.system, (f"touch {self.path}",))


@pytest.fixture
def registered(session_factory: sessionmaker[Session], tiny_bundle: Path) -> str:
    with session_factory.begin() as s:
        mv, _ = register_bundle(session=s, path=tiny_bundle, name="topics")
        return mv.bundle_sha256


def _replace_blob(factory: sessionmaker[Session], sha: str, data: bytes) -> None:
    with factory.begin() as s:
        s.execute(update(Blob).where(Blob.sha256 == sha).values(data=data, size=len(data)))


def test_stored_manifest_not_matching_the_row_hash_is_refused(
    session_factory: sessionmaker[Session], registered: str, tiny_bundle: Path, tmp_path: Path
) -> None:
    forged = (tiny_bundle / MANIFEST).read_bytes().replace(b'"sha256"', b'"sha256" ', 1)
    _replace_blob(session_factory, registered, forged)
    with session_factory() as s, pytest.raises(BundleError, match="does not match its sha256"):
        fetch_model(session=s, ref="topics", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / registered).exists()


def test_stored_weights_replaced_by_a_pickle_are_refused_and_never_executed(
    session_factory: sessionmaker[Session], registered: str, tiny_bundle: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    weights_sha = sha256_bytes((tiny_bundle / WEIGHTS).read_bytes())
    _replace_blob(session_factory, weights_sha, pickle.dumps(Boom(marker)))
    cache = ModelCache(session_factory=session_factory, cache_dir=tmp_path / "cache")
    with pytest.raises(ModelUnavailable) as exc:
        cache.get("topics")
    assert f"stored {WEIGHTS} does not match its sha256" in str(exc.value)
    assert "topics@1" in str(exc.value)
    assert not marker.exists()
    assert not (tmp_path / "cache" / registered).exists()


def test_a_damaged_cache_copy_is_replaced_from_the_database(
    session_factory: sessionmaker[Session],
    registered: str,
    tmp_path: Path,
    tiny_classifier: object,
) -> None:
    cache_dir = tmp_path / "cache"
    with session_factory() as s:
        _, path = fetch_model(session=s, ref="topics", cache_dir=cache_dir)
    marker = tmp_path / "pwned"
    (path / WEIGHTS).write_bytes(pickle.dumps(Boom(marker)))  # someone edits the cache
    cache = ModelCache(session_factory=session_factory, cache_dir=cache_dir)
    model = cache.get("topics")  # re-verified, found damaged, fetched again
    assert not marker.exists()
    texts = ["goal match team", "market shares"]
    got = [p.label for p in model.classifier.predict(texts)]
    assert got == [p.label for p in tiny_classifier.predict(texts)]  # type: ignore[attr-defined]


def test_a_row_pointing_at_another_valid_bundle_with_other_labels_is_refused(
    session_factory: sessionmaker[Session],
    registered: str,
    tmp_path: Path,
    tiny_classifier: object,
) -> None:
    from textlstm.classifier.predictor import Classifier

    impostor: Classifier = tiny_classifier  # type: ignore[assignment]
    original = list(impostor.labels)
    impostor.labels = [f"not-{x}" for x in original]  # same count, other names: a valid bundle
    try:
        impostor.save(tmp_path / "impostor", metrics={})
    finally:
        impostor.labels = original
    with session_factory.begin() as s:
        other, _ = register_bundle(session=s, path=tmp_path / "impostor", name="impostor")
        other_sha = other.bundle_sha256
        s.execute(
            update(ModelVersion)
            .where(ModelVersion.name == "topics")
            .values(bundle_sha256=other_sha)
        )
    cache = ModelCache(session_factory=session_factory, cache_dir=tmp_path / "cache")
    with pytest.raises(ModelUnavailable) as exc:
        cache.get("topics")
    message = str(exc.value)
    assert "topics@1" in message and f"lists labels {original}" in message
    assert "not-" in message and other_sha[:12] in message
    assert cache.get("impostor").classifier.labels == [f"not-{x}" for x in original]
    with session_factory() as s:  # the row is untouched: the operator fixes it, not the worker
        assert s.scalar(select(ModelVersion.bundle_sha256).where(ModelVersion.name == "topics"))
