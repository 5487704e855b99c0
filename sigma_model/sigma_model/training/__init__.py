# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""LoRA fine-tuning of Sigma with TRAF and TSAC (paper section 4.2).

    from sigma_model.training import TrainingConfig, SigmaTrainer
    trainer = SigmaTrainer(TrainingConfig(shards_dir="data/shards", output_dir="runs/a"), SigmaConfig())
    trainer.train()

Modules: configuration_training (TrainingConfig), losses (TRAF/TSAC terms), curriculum, lora (peft),
batching (collation, data order, synthetic windows), checkpointing (tensor-only, atomic), metrics
(Table 1 columns to CSV/JSONL/TensorBoard), trainer (the loop), hub (push/pull), train (CLI).
Heavy dependencies (peft, huggingface_hub) load lazily.
"""

from .configuration_training import FinetuneConfig, LossConfig, TrainingConfig
from .curriculum import Curriculum, CurriculumWeights

__all__ = ["Curriculum", "CurriculumWeights", "FinetuneConfig", "LossConfig", "SigmaTrainer", "TrainingConfig"]


def __getattr__(name: str):
    if name == "SigmaTrainer":
        from .trainer import SigmaTrainer

        return SigmaTrainer
    raise AttributeError(name)
