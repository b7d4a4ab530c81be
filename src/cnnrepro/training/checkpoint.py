"""Resume checkpoints and the final model file, both loaded with `torch.load(weights_only=True)`.

A resume checkpoint contains everything an epoch boundary needs to continue bit for bit: model, optimizer,
schedule and averaged-model state, the RNG states of torch, numpy and Python, the epoch records and the number
of finished epochs. It lives in `.cnnrepro/checkpoints/<key>/<fingerprint>/last.pt`, where the fingerprint
covers the params and the input data digest, so a changed setting never resumes an unrelated run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnrepro import atomic
from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
RESUME_FILE = "last.pt"


def fingerprint(key: str, params: Any, inputs: dict[str, str], world_size: int = 1) -> str:
    """Return a sha256 over the run's key, params (JSON-ready), input digests and process count."""
    text = json.dumps(
        {"key": key, "params": params, "inputs": inputs, "world_size": world_size}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load with weights_only=True; a file that is not a plain state dict raises InputError."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as err:
        raise InputError(
            f"{path} is not a loadable weights-only checkpoint ({type(err).__name__}: {err}); "
            f"delete it and rerun the training stage"
        ) from None


def save(obj: Any, path: str | Path) -> None:
    """Write `obj` with torch.save to a temporary file, then rename it onto `path`."""
    with atomic.atomic_path(path) as tmp:
        torch.save(obj, tmp)


# -- RNG state -------------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Return the torch, CUDA, numpy and Python RNG states as tensors and plain values."""
    np_kind, np_keys, np_pos, np_gauss, np_cached = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(int(v) for v in python_state["internal"]), python_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# -- resume ----------------------------------------------------------------------------------------------------


class ResumeStore:
    """The resume checkpoint of one training run: `folder/last.pt`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / RESUME_FILE

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        state = safe_load(self.path)
        log.info("resuming from %s after epoch %d", self.path, state["epoch"])
        return state

    def save(self, state: dict[str, Any]) -> None:
        save(state, self.path)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# -- final model -----------------------------------------------------------------------------------------------


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the trained model in `folder/model.pt` in eval mode; return (model, metadata).

    The metadata is the saved dict without the state dict: family, build_kwargs, classes, normalization
    (mean, std), evaluation (the held-out split), feature_max (DeepFace), params and git_commit.
    """
    from cnnrepro import models

    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise InputError(f"{path} not found: run `dvc repro train@{Path(folder).name}` first")
    saved = safe_load(path, map_location=device)
    try:
        state_dict = saved.pop("state_dict")
        model = models.build(saved["family"], **saved["build_kwargs"])
    except KeyError as err:
        raise InputError(f"{path} lacks the entry {err}; retrain it with the current code") from None
    model.load_state_dict(state_dict)
    model.to(device).eval()
    return model, saved
