# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""`DictConfig`: dict / JSON persistence shared by the validated dataclass configs.

`SigmaConfig`, `TrainingConfig` and `AdapterConfig` inherit it: ``to_dict`` is `dataclasses.asdict`,
``from_dict`` refuses unknown keys with a one-line ``ValueError`` and then runs the dataclass's own
validation (``__post_init__``), and ``save`` / ``load`` write and read indented, key-sorted JSON.
``read_json_object`` reads any JSON file that must hold an object, with errors that name the file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Iterable, Self


def read_json_object(path: str | Path, required: Iterable[str] = ()) -> dict[str, Any]:
    """Return the JSON object in ``path``.

    ValueError naming the file when it is not JSON, not an object or lacks a ``required`` key.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, not {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    return data


class DictConfig:
    """Mixin for a validated dataclass config: dict and JSON round trips."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
        return cls(**data)

    def replace(self, **changes: Any) -> Self:
        """Return a validated copy with some fields changed."""
        return self.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read ``save``'s JSON; any error names the file."""
        data = read_json_object(path)
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err
