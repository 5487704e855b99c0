"""`sigma-train`: LoRA fine-tuning of Sigma with TRAF + TSAC (paper section 4.2).

Every TrainingConfig field is ``--train.<field>=...``, every SigmaConfig field of a fresh model is
``--model.<field>=...`` (draccus, like lerobot-train); ``--config_path=FILE`` (YAML or JSON with
``train:`` / ``model:`` sections) sets the starting values and flags override it. Examples::

    sigma-train --train.shards_dir=data/shards --train.output_dir=runs/so101 --train.max_steps=500
    sigma-train --train.shards_dir=data/shards --train.output_dir=runs/so101 --resume=auto   # continue the run
    sigma-train --train.synthetic_samples=64 --train.output_dir=/tmp/smoke --train.max_steps=20
    sigma-train --config_path=run.yaml --train.rho_hard=0.25 --model.d_model=64
    sigma-train --train.shards_dir=data/shards --stats=data/my_lerobot_dataset   # MEAN_STD normalisation
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..cli import fail, parse_cli, to_json
from ..configuration_sigma import SigmaConfig
from .configuration_training import TrainingConfig

PROG = "sigma-train"


@dataclass
class TrainCLI:
    """sigma-train's command line: the run (train), a fresh model (model) and what is not a config field."""

    train: TrainingConfig = field(default_factory=TrainingConfig)
    # a fresh model's SigmaConfig (ignored when train.init_checkpoint or --resume gives the model)
    model: SigmaConfig = field(default_factory=SigmaConfig)
    # SigmaConfig JSON file for a fresh model (e.g. a checkpoint's config.json) instead of --model.* fields
    model_config: str | None = None
    # standardise joint states and actions with a LeRobot dataset's statistics (a dataset root, its
    # meta/stats.json or a hub id); they are saved in the model config
    stats: str | None = None
    # "auto": continue from the latest checkpoint in train.output_dir; or a checkpoint directory
    resume: str | None = None
    overwrite: bool = False  # start afresh even if train.output_dir has checkpoints
    progress: bool = True  # tqdm progress bar
    print_config: bool = False  # print the resolved command-line config as JSON (a --config_path file) and exit
    push_to_hub: str | None = None  # upload the final checkpoint to this Hugging Face repo id
    hub_public: bool = False  # create the hub repo public (default private)
    env_file: str = "sigma.env"  # settings / token file
    verbose: bool = False


def resolve_model_config(cli: TrainCLI) -> SigmaConfig:
    """The fresh model's SigmaConfig: --model_config or the --model.* fields, plus --stats."""
    model = cli.model
    if cli.model_config:
        if model != SigmaConfig():
            raise ValueError("give --model_config or --model.* fields, not both")
        if not Path(cli.model_config).is_file():
            raise FileNotFoundError(f"--model_config {cli.model_config} does not exist")
        model = SigmaConfig.load(cli.model_config)
    if cli.stats:
        from ..data.lerobot_io import normalization_stats

        model = model.replace(**normalization_stats(cli.stats))
    return model


def main(argv: list[str] | None = None) -> int:
    cli = parse_cli(TrainCLI, argv, PROG, description=__doc__)
    logging.basicConfig(level=logging.INFO if cli.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if cli.print_config:
        print(to_json(cli))
        return 0
    config = cli.train
    try:
        from .trainer import SigmaTrainer

        trainer = SigmaTrainer(config, resolve_model_config(cli), resume=cli.resume, overwrite=cli.overwrite)
        counts = trainer.summary()
        print(f"{PROG}: {counts['trainable']:,} of {counts['total']:,} parameters trainable "
              f"(LoRA {counts['lora']:,}, heads {counts['heads_trainable']:,}); device {trainer.device}; "
              f"{len(trainer.dataset)} windows; starting at step {trainer.step}/{config.max_steps}", file=sys.stderr)
        result = trainer.train(progress=cli.progress)
        m = result["last_metrics"]
        print(f"{PROG}: done at step {result['step']}: loss {m.get('loss', float('nan')):.4f}, "
              f"L_act {m.get('L_act', float('nan')):.4f}, tau_rms {m.get('tau_rms', float('nan')):.3f}; "
              f"checkpoint {result['checkpoint']}; metrics {Path(config.output_dir) / 'metrics.csv'}")
        if cli.push_to_hub:
            from .hub import push_artifacts

            url = push_artifacts(result["checkpoint"], cli.push_to_hub, env_file=cli.env_file, private=not cli.hub_public)
            print(f"{PROG}: pushed to {url}")
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (a checkpoint was saved; continue with --resume=auto)", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        fail(PROG, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
