"""Apply a profile and `key=value` overrides to params.yaml before a flow runs the pipeline.

Overrides work as `dvc exp run -S key=value` does: the value is parsed as YAML, the dotted key must already
exist in params.yaml, and the file keeps its comments and key order. The result is validated with
`cnnrepro.params.load`; an invalid result restores the previous file and raises ParamsError.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from cnnrepro import atomic, params
from cnnrepro.params import ParamsError, profiles


def parse_override(text: str) -> tuple[str, Any]:
    """Split `key=value` and parse the value as YAML (`train.lenet5.epochs=3` gives 3, an int)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ParamsError(f"invalid override {text!r}: expected KEY=VALUE, for example train.lenet5.epochs=3")
    value = YAML(typ="safe").load(raw) if raw.strip() else ""
    return key, value


def _set_dotted(tree: Any, key: str, value: Any, path: Path) -> None:
    parts = key.split(".")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(parts[:depth]) or "the top level"
            raise ParamsError(f"{path}: cannot override '{key}': '{part}' is not in {where}")
        node = node[part]
    if not isinstance(node, Mapping) or parts[-1] not in node:
        where = ".".join(parts[:-1]) or "the top level"
        raise ParamsError(f"{path}: cannot override '{key}': '{parts[-1]}' is not in {where}")
    node[parts[-1]] = value


def apply(root: Path, profile: str | None = None, overrides: Mapping[str, Any] | Iterable[str] = ()) -> dict[str, Any]:
    """Write params.yaml from `profile` (when given), then apply `overrides`; return {key: new value}.

    `overrides` is a mapping of dotted keys to values, or `key=value` strings as `dvc exp run -S` takes them.
    """
    target = root / params.PARAMS_FILE
    before = target.read_text(encoding="utf-8") if target.is_file() else None
    if isinstance(overrides, Mapping):
        pairs = dict(overrides)
    else:
        pairs = dict(parse_override(item) for item in overrides)
    try:
        if profile is not None:
            profiles.write(profile, root, target)
        if pairs:
            yaml = YAML()  # round-trip mode keeps comments and key order
            yaml.width = 100
            tree = yaml.load(target.read_text(encoding="utf-8"))
            for key, value in pairs.items():
                _set_dotted(tree, key, value, target)
            buffer = io.StringIO()
            yaml.dump(tree, buffer)
            atomic.write_text(target, buffer.getvalue())
        data = params.read_yaml(target)
        params.load(list(data), target)
    except BaseException:
        if before is not None:
            atomic.write_text(target, before)
        raise
    return pairs
