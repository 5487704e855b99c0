"""`DictConfig`: dict / JSON persistence shared by the validated dataclass configs.

`SigmaConfig`, `TrainingConfig` and `AdapterConfig` inherit it: ``to_dict`` is `dataclasses.asdict`,
``from_dict`` refuses unknown keys with a one-line ``ValueError`` and then runs the dataclass's own
validation (``__post_init__``), and ``save`` / ``load`` write and read indented, key-sorted JSON.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Self


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
        """A validated copy with some fields changed."""
        return self.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_dict(json.loads(Path(path).read_text()))
