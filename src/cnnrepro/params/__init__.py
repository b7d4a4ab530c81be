"""params.yaml: the one source of tunable values, validated into typed sections before any work.

Each stage names the dotted keys it reads (`load(["profile", "train.lenet5"])`); only those keys are validated
and returned, and `dvc.yaml` declares the same keys for the stage. An invalid value raises `ParamsError`, whose
message names the key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from cnnrepro.params.align import AlignParams
from cnnrepro.params.download import DownloadParams
from cnnrepro.params.evaluate import EnsembleParams, EvaluateParams, ReportParams
from cnnrepro.params.promote import PromoteParams
from cnnrepro.params.train import TrainParams
from cnnrepro.params.tracking import TrackingParams

PARAMS_FILE = "params.yaml"
ProfileName = Literal["smoke", "quick", "paper"]
PROFILES: tuple[str, ...] = get_args(ProfileName)


class ParamsError(ValueError):
    """An invalid or missing params.yaml value; the message names the key and the allowed values."""


class Params(BaseModel):
    """The whole of params.yaml. Stages validate only the sections they declare."""

    model_config = {"extra": "forbid", "frozen": True}

    profile: ProfileName
    download: DownloadParams
    align: AlignParams
    train: TrainParams
    evaluate: EvaluateParams
    ensemble: EnsembleParams
    report: ReportParams
    tracking: TrackingParams
    promote: PromoteParams


def _field_type(model: type[BaseModel], name: str) -> Any:
    # Pydantic moves a field's constraints (ge, le, gt) out of its annotation into `metadata`. Putting them back
    # keeps the bounds of a leaf key that a stage validates on its own, such as download.retries.
    field = model.model_fields[name]
    if field.metadata:
        return Annotated[(field.annotation, *field.metadata)]
    return field.annotation


def section_type(key: str) -> Any:
    """Return the declared type of a dotted params key such as `train.lenet5`."""
    current: Any = Params
    walked: list[str] = []
    for part in filter(None, key.split(".")):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            raise ParamsError(f"params key '{key}' goes below '{'.'.join(walked)}', which has no sub-keys")
        if part not in current.model_fields:
            allowed = ", ".join(current.model_fields)
            where = ".".join(walked) or "the top level"
            raise ParamsError(f"unknown params key '{key}': {where} has no '{part}'; allowed: {allowed}")
        current = _field_type(current, part)
        walked.append(part)
    return current


def read_yaml(path: str | os.PathLike[str] = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: create it with `cnnrepro profile quick` (or smoke, paper)")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def _lookup(data: Mapping[str, Any], key: str, path: Path) -> Any:
    node: Any = data
    walked = []
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(walked) or "the top level"
            raise ParamsError(
                f"{path}: missing params key '{key}' ('{part}' is not in {where}); "
                f"regenerate the file with `cnnrepro profile <name>` or add the section"
            )
        node = node[part]
        walked.append(part)
    return node


def describe_error(key: str, error: Mapping[str, Any], path: Path) -> str:
    loc = ".".join(part for part in [key, *(str(p) for p in error["loc"])] if part)
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        parent_type = section_type(".".join(loc.split(".")[:-1]))
        allowed = list(getattr(parent_type, "model_fields", {}))
        name = loc.split(".")[-1]
        hint = difflib.get_close_matches(name, allowed, n=1)
        did_you_mean = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"{path}: unknown key '{loc}'{did_you_mean}; allowed keys: {', '.join(allowed)}"
    if error["type"] == "literal_error" and loc == "profile":
        return f"{path}: profile = {value!r} is not a profile; allowed: {', '.join(PROFILES)}"
    return f"{path}: {loc} = {value!r} is invalid: {error['msg']}"


def load(keys: Iterable[str], path: str | os.PathLike[str] = PARAMS_FILE) -> dict[str, Any]:
    """Validate the given dotted keys of params.yaml and return {key: typed value}.

    Raises ParamsError on the first invalid key, with every problem of that key listed.
    """
    path = Path(path)
    data = read_yaml(path)
    # A stray top-level section (a misspelt copy such as `trian:`) would otherwise be ignored by every stage.
    for name in data:
        if name not in Params.model_fields:
            hint = difflib.get_close_matches(str(name), list(Params.model_fields), n=1)
            did_you_mean = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ParamsError(
                f"{path}: unknown top-level key '{name}'{did_you_mean}; "
                f"allowed: {', '.join(Params.model_fields)}"
            )
    result: dict[str, Any] = {}
    for key in keys:
        kind = section_type(key)
        raw = _lookup(data, key, path)
        try:
            result[key] = TypeAdapter(kind).validate_python(raw)
        except ValidationError as err:
            messages = [describe_error(key, e, path) for e in err.errors()]
            raise ParamsError("\n".join(messages)) from None
    return result


def dump(value: Any) -> Any:
    """Return plain YAML/JSON-ready data for a validated value (sections become dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return TypeAdapter(type(value)).dump_python(value, mode="json")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested params into dotted keys, as MLflow params and `dvc exp run -S` name them."""
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, key + "."))
        else:
            flat[key] = value
    return flat
