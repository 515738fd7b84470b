"""Per-process model cache: resolve a reference through the registry, load each bundle once
(lazily, in the process that uses it) and keep a small LRU of loaded models.

A reference that can move (`name`, `name@alias`) is re-resolved at most every `refresh_s`
seconds, so `models alias … production` reaches running workers without a restart; a pinned
`name@3` is resolved once. A batch holds the `LoadedModel` it started with, so a moved alias
never changes the model under a batch in flight, and every row records `version_id`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from textlstm.errors import BundleError, NotFoundError, ValidationError
from textlstm.wire.refs import parse_model_ref

log = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """The reference cannot be served (unknown, malformed, or its bundle does not load)."""


@dataclass(frozen=True)
class LoadedModel:
    version_id: int
    ref: str  # exact "name@version"
    bundle_sha256: str
    classifier: Any  # textlstm.classifier.predictor.Classifier (torch imported lazily)


@dataclass
class _Resolution:
    version_id: int
    ref: str
    bundle_sha256: str
    at: float
    labels: tuple[str, ...] = ()


def check_labels(res: _Resolution, classifier: Any) -> None:
    """Refuse a bundle whose labels are not the ones its registry row lists.

    The hashes prove the bundle is the one the row names, not that the row describes it: a
    row edited by hand (or a bug) could point at another valid bundle, and rows would then be
    stored under the wrong label names. Readers of SQL trust the row, so both must agree.
    """
    found = tuple(getattr(classifier, "labels", ()))
    if res.labels and found != res.labels:
        raise BundleError(
            f"its registry row lists labels {list(res.labels)} but the bundle "
            f"{res.bundle_sha256[:12]} has {list(found)}"
        )


def _default_loader(path: Path, device: str) -> Any:
    from textlstm.classifier.predictor import Classifier

    return Classifier.load(path, device=device)


def make_loader(quantize: str = "none") -> Callable[[Path, str], Any]:
    """The bundle loader a worker uses: `Classifier.load`, then int8 dynamic quantization on
    CPU when `quantize` is "int8" (TEXTLSTM_WORKER_QUANTIZE). Where it cannot apply (a GPU,
    or a torch without it) the model stays fp32 and a warning says why."""
    if quantize == "none":
        return _default_loader

    def load(path: Path, device: str) -> Any:
        classifier = _default_loader(path, device)
        if not str(device).startswith("cpu"):
            log.warning("TEXTLSTM_WORKER_QUANTIZE=%s applies to CPU workers; %s stays fp32",
                        quantize, device)  # fmt: skip
            return classifier
        from textlstm.classifier.quantize import quantize_int8

        classifier.model, why = quantize_int8(classifier.model)
        if why:
            log.warning("model %s stays fp32: %s", path.name[:12], why)
        else:
            log.info("model %s: LSTM and Linear weights quantized to int8", path.name[:12])
        return classifier

    return load


class ModelCache:
    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        cache_dir: Path,
        device: str = "cpu",
        refresh_s: float = 15.0,
        capacity: int = 2,
        loader: Callable[[Path, str], Any] = _default_loader,
        clock: Callable[[], float] = time.monotonic,
        on_load: Callable[[str, float], None] | None = None,
        on_evict: Callable[[str], None] | None = None,
    ) -> None:
        """`on_load(ref, seconds)` and `on_evict(ref)` report changes (the worker's metrics)."""
        self._sessions = session_factory
        self._cache_dir = cache_dir
        self._device = device
        self._refresh_s = refresh_s
        self._capacity = capacity
        self._loader = loader
        self._clock = clock
        self._resolved: dict[str, _Resolution] = {}
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()  # by bundle sha256
        self._on_load = on_load
        self._on_evict = on_evict

    def get(self, ref: str) -> LoadedModel:
        """The model `ref` means now. Raises ModelUnavailable with a reason a user can act on;
        database errors (SQLAlchemy) propagate so the caller can retry."""
        res = self._resolve(ref)
        loaded = self._loaded.get(res.bundle_sha256)
        if loaded is not None and loaded.version_id == res.version_id:
            self._loaded.move_to_end(res.bundle_sha256)
            return loaded
        from textlstm.store.registry import fetch_to_cache

        started = time.perf_counter()  # fetch (first time on this host) + load
        try:
            with self._sessions() as session:
                path = fetch_to_cache(
                    session=session, sha256=res.bundle_sha256, cache_dir=self._cache_dir
                )
            classifier = self._loader(path, self._device)
            check_labels(res, classifier)
        except (BundleError, NotFoundError, OSError) as exc:  # OSError: cache dir unwritable
            raise ModelUnavailable(f"model {ref} ({res.ref}) cannot be loaded: {exc}") from None
        loaded = LoadedModel(res.version_id, res.ref, res.bundle_sha256, classifier)
        self._loaded[res.bundle_sha256] = loaded
        while len(self._loaded) > self._capacity:
            old_sha, old = self._loaded.popitem(last=False)
            log.info("model cache: evicted %s (bundle %s)", old.ref, old_sha[:12])
            if self._on_evict is not None:
                self._on_evict(old.ref)
        seconds = time.perf_counter() - started
        log.info(
            "model cache: loaded %s for %r on %s in %.0f ms (bundle %s)",
            res.ref,
            ref,
            self._device,
            seconds * 1000,
            res.bundle_sha256[:12],
        )
        if self._on_load is not None:
            self._on_load(res.ref, seconds)
        return loaded

    def _resolve(self, ref: str) -> _Resolution:
        now = self._clock()
        cached = self._resolved.get(ref)
        if cached is not None:
            try:
                pinned = parse_model_ref(ref).version is not None
            except ValidationError:
                pinned = False
            if pinned or now - cached.at < self._refresh_s:
                return cached
        from textlstm.store.registry import resolve

        try:
            with self._sessions() as session:
                mv = resolve(session=session, ref=ref)
                res = _Resolution(mv.id, mv.ref, mv.bundle_sha256, now, tuple(mv.labels))
        except (NotFoundError, ValidationError) as exc:
            self._resolved.pop(ref, None)
            raise ModelUnavailable(str(exc)) from None
        if cached is not None and cached.version_id != res.version_id:
            log.info("model %r moved: %s -> %s", ref, cached.ref, res.ref)
        self._resolved[ref] = res
        return res

    @property
    def loaded_refs(self) -> list[str]:
        return [m.ref for m in self._loaded.values()]
