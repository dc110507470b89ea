"""Experiment config overrides: `name.key.path=value` specs and JSON override files.

Precedence (last wins): suite defaults < override files (in the order given) < inline specs.
Values are typed: `true`/`false`/`null`, numbers, quoted strings and lists parse as JSON; anything
else is taken as a plain string, so `model=gpt-4-turbo` needs no quoting.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import BadInput


@dataclass(frozen=True)
class OverrideSpec:
    experiment: str
    path: tuple[str, ...]
    value: Any
    source: str  # the original text, for messages


def parse_value(text: str) -> Any:
    raw = text.strip()
    if raw == "":
        return ""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1]
    if raw.startswith("[") and raw.endswith("]"):
        # A shell-friendly list such as [a,b,3]: items are typed one by one.
        inner = raw[1:-1].strip()
        return [parse_value(item) for item in inner.split(",")] if inner else []
    if raw.startswith(("{", '"')):
        raise BadInput(f"override value {text!r} is not valid JSON")
    return raw


def parse_spec(spec: str) -> OverrideSpec:
    """`suite:stage:variant.key.path=value` -> OverrideSpec (syntax only; names checked later)."""
    lhs, sep, value = spec.partition("=")
    if not sep:
        raise BadInput(f"experiment override {spec!r}: expected name.key=value (no '=' found)")
    lhs = lhs.strip()
    name, dot, rest = lhs.partition(".")
    if not dot or not rest:
        raise BadInput(f"experiment override {spec!r}: expected name.key=value (no key after the experiment name)")
    if name.count(":") != 2:
        raise BadInput(f"experiment override {spec!r}: experiment name {name!r} must look like suite:stage:variant")
    path = tuple(rest.split("."))
    if any(not part for part in path):
        raise BadInput(f"experiment override {spec!r}: empty key in {rest!r}")
    return OverrideSpec(name, path, parse_value(value), spec)


def set_path(target: dict[str, Any], path: tuple[str, ...], value: Any, where: str) -> None:
    node = target
    for key in path[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            raise BadInput(f"{where}: {'.'.join(path)} goes through {key!r}, which is not an object")
        node = child
    node[path[-1]] = value


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_override_file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"experiment override file {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"experiment override file {path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise BadInput(f"experiment override file {path}: expected a JSON object of experiment name -> config")
    for name, cfg in data.items():
        if not isinstance(cfg, dict):
            raise BadInput(f"experiment override file {path}: the value for {name!r} must be an object")
    return data


@dataclass(frozen=True)
class OverrideSet:
    """Everything that changes suite defaults, in precedence order."""

    files: tuple[tuple[str, dict[str, dict[str, Any]]], ...] = ()  # (file name, contents)
    inline: tuple[OverrideSpec, ...] = ()

    def experiments(self) -> set[str]:
        names = {spec.experiment for spec in self.inline}
        for _, data in self.files:
            names.update(data)
        return names

    def with_inline(self, specs: list[str]) -> OverrideSet:
        return OverrideSet(self.files, self.inline + tuple(parse_spec(s) for s in specs))

    def apply(self, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
        config = copy.deepcopy(defaults)
        for _file, data in self.files:
            if name in data:
                config = deep_merge(config, data[name])
        for spec in self.inline:
            if spec.experiment == name:
                set_path(config, spec.path, spec.value, f"experiment override {spec.source!r}")
        return config


def build_override_set(files: list[Path] | None, inline: list[str] | None) -> OverrideSet:
    loaded = tuple((str(p), load_override_file(Path(p))) for p in (files or []))
    return OverrideSet(loaded, tuple(parse_spec(s) for s in (inline or [])))
