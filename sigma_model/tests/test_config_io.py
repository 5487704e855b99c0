"""DictConfig: the one dict/JSON persistence of SigmaConfig, TrainingConfig and AdapterConfig."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigma_model.configuration_sigma import SigmaConfig
from sigma_model.evaluation.adapter import AdapterConfig
from sigma_model.training.configuration_training import TrainingConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [
    (SigmaConfig, {"d_model": 64, "fusion_weights": (0.5, 1.0, 1.0), "notes": {"seed": 3}}, {"n_heads": 0}),
    (TrainingConfig, {"rho_hard": 0.5, "lora_target_modules": ("q_proj",), "adam_betas": (0.8, 0.9)}, {"rho_hard": 2}),
    (AdapterConfig, {"k": 2.0, "tau_l2_range": (0.5, 10.0)}, {"min_scale": 2.0, "max_scale": 1.0}),
]


@pytest.mark.parametrize("cls, changes, bad", CONFIGS, ids=lambda c: getattr(c, "__name__", ""))
def test_json_round_trip_validation_and_unknown_fields(tmp_path, cls, changes, bad):
    config = cls(**changes)
    config.save(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text()) == json.loads(json.dumps(config.to_dict()))
    assert cls.load(tmp_path / "c.json") == config
    assert config.replace(**changes) == config and cls().replace(**changes) == config
    with pytest.raises(ValueError, match=rf"unknown {cls.__name__} fields: \['nonsense'\]"):
        cls.from_dict({**config.to_dict(), "nonsense": 1})
    with pytest.raises(ValueError, match=cls.__name__ if cls is not SigmaConfig else "n_heads"):
        cls.from_dict({**config.to_dict(), **bad})


def test_the_shipped_checkpoint_config_still_loads():
    path = ROOT / "checkpoints" / "sigma_so101_default" / "config.json"
    config = SigmaConfig.load(path)
    assert config.to_dict() == SigmaConfig.from_dict(json.loads(path.read_text())).to_dict()
    assert config.d_model == json.loads(path.read_text())["d_model"]
