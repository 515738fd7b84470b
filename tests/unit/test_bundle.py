"""Bundles round-trip exactly and refuse to load when anything was altered."""

import json
import pickle
from pathlib import Path

import pytest

from textlstm import bundle
from textlstm.classifier.predictor import Classifier
from textlstm.errors import BundleError

TEXTS = ["the team won the cup", "bank profit rates", "space telescope study", ""]


def test_round_trip_gives_identical_predictions(
    tiny_classifier: Classifier, tiny_bundle: Path
) -> None:
    loaded = Classifier.load(tiny_bundle)
    assert loaded.labels == tiny_classifier.labels
    assert loaded.temperature == tiny_classifier.temperature
    assert loaded.tokenizer.vocab == tiny_classifier.tokenizer.vocab
    assert [p.to_dict() for p in loaded.predict(TEXTS)] == [
        p.to_dict() for p in tiny_classifier.predict(TEXTS)
    ]
    assert bundle.bundle_digest(tiny_bundle) == bundle.sha256_file(tiny_bundle / "manifest.json")


def test_saving_the_same_model_twice_gives_the_same_digest(
    tiny_classifier: Classifier, tmp_path: Path
) -> None:
    a = tiny_classifier.save(tmp_path / "a", metrics={"x": 1})
    b = tiny_classifier.save(tmp_path / "b", metrics={"x": 1})
    assert a == b


def test_tampered_weights_are_refused(bundle_copy: Path) -> None:
    weights = bundle_copy / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights\.safetensors has been modified \(sha256"):
        Classifier.load(bundle_copy)


@pytest.mark.parametrize(
    "name", ["config.json", "tokenizer.json", "weights.safetensors", "manifest.json"]
)
def test_missing_files_are_refused(bundle_copy: Path, name: str) -> None:
    (bundle_copy / name).unlink()
    with pytest.raises(BundleError, match=f"incomplete: {name} is missing"):
        Classifier.load(bundle_copy)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        Classifier.load(tmp_path / "missing")


def _rewrite(bundle_dir: Path, name: str, data: bytes) -> None:
    """Replace a file *and* re-sign the manifest, as an attacker with write access could."""
    (bundle_dir / name).write_bytes(data)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["files"][name] = {"sha256": bundle.sha256_bytes(data), "size": len(data)}
    (bundle_dir / "manifest.json").write_bytes(bundle.dump_json(manifest))


def test_label_count_different_from_model_is_refused(bundle_copy: Path) -> None:
    config = json.loads((bundle_copy / "config.json").read_text())
    config["labels"].append("extra")
    _rewrite(bundle_copy, "config.json", bundle.dump_json(config))
    with pytest.raises(BundleError, match="lists 4 labels but the model has 3 outputs"):
        Classifier.load(bundle_copy)


def test_weights_not_matching_config_are_refused(bundle_copy: Path) -> None:
    config = json.loads((bundle_copy / "config.json").read_text())
    config["model"]["hidden_size"] = 32
    _rewrite(bundle_copy, "config.json", bundle.dump_json(config))
    with pytest.raises(BundleError, match="weights do not match the config"):
        Classifier.load(bundle_copy)


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (Path(self.marker),))  # type: ignore[attr-defined]


def test_pickle_weights_are_refused_and_never_executed(bundle_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    boom = _Boom()
    boom.marker = str(marker)  # type: ignore[attr-defined]
    _rewrite(bundle_copy, "weights.safetensors", pickle.dumps(boom))
    with pytest.raises(BundleError, match="weights are unreadable"):
        Classifier.load(bundle_copy)
    assert not marker.exists()


def test_write_bundle_refuses_non_empty_dir_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    files = dict.fromkeys(bundle.REQUIRED, b"{}")
    with pytest.raises(BundleError, match="exists and is not empty"):
        bundle.write_bundle(out, files)
    bundle.write_bundle(out, files, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert bundle.verify_bundle(out)["format"] == "textlstm-bundle"
