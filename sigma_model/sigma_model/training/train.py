"""`sigma-train`: LoRA fine-tuning of Sigma with TRAF + TSAC (paper section 4.2).

Examples:
    sigma-train --shards data/shards --output-dir runs/so101 --max-steps 500
    sigma-train --shards data/shards --output-dir runs/so101 --resume          # continue the run
    sigma-train --synthetic 64 --output-dir /tmp/smoke --max-steps 20          # no data needed
    sigma-train --config train.json --set rho_hard=0.25 --set lambda_hard=0.5
    sigma-train --shards data/shards --stats data/my_lerobot_dataset -o runs/norm   # MEAN_STD normalisation

Settings come from the TrainingConfig defaults, then --config (a TrainingConfig JSON), then the
explicit flags, then --set KEY=VALUE (any TrainingConfig field; VALUE parsed as JSON when it can).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .configuration_training import MIXED_PRECISION, OPTIMIZERS, SCHEDULERS, TrainingConfig

FLAG_FIELDS = {
    "shards": "shards_dir", "synthetic": "synthetic_samples", "output_dir": "output_dir",
    "init_checkpoint": "init_checkpoint", "max_steps": "max_steps", "batch_size": "batch_size",
    "grad_accum": "grad_accum_steps", "lr": "learning_rate", "optimizer": "optimizer", "scheduler": "scheduler",
    "warmup_steps": "warmup_steps", "seed": "seed", "device": "device", "mixed_precision": "mixed_precision",
    "lora_r": "lora_r", "ema_decay": "ema_decay", "threads": "num_threads", "save_every": "save_every", "log_every": "log_every", "keep_checkpoints": "keep_checkpoints",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sigma-train", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--shards", metavar="DIR", help="sigma-preprocess shard directory")
    data.add_argument("--synthetic", type=int, metavar="N", help="train on N synthetic windows instead of shards")
    data.add_argument("--batch-size", type=int)
    model = p.add_argument_group("model")
    model.add_argument("--model-config", metavar="JSON", help="SigmaConfig JSON for a fresh model (default: SigmaConfig())")
    model.add_argument("--stats", metavar="DATASET",
                       help="standardise joint states and actions with a LeRobot dataset's statistics (LeRobot's "
                            "dataset metadata; a dataset root, its meta/stats.json or a hub id); the statistics are "
                            "saved in the model config")
    model.add_argument("--init-checkpoint", metavar="DIR", help="sigma_model checkpoint to start from")
    model.add_argument("--no-lora", action="store_true", help="no LoRA adapters (backbone stays frozen)")
    model.add_argument("--lora-r", type=int)
    model.add_argument("--load-in-4bit", action="store_true", help="NF4 backbone via bitsandbytes (CUDA only)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--max-steps", type=int)
    opt.add_argument("--grad-accum", type=int, metavar="N", help="micro-batches per optimiser step")
    opt.add_argument("--lr", type=float)
    opt.add_argument("--optimizer", choices=OPTIMIZERS)
    opt.add_argument("--scheduler", choices=SCHEDULERS)
    opt.add_argument("--warmup-steps", type=int)
    opt.add_argument("--ema-decay", type=float, metavar="D",
                     help="export an exponential moving average of the weights (e.g. 0.999; default 0: off)")
    opt.add_argument("--mixed-precision", choices=MIXED_PRECISION)
    opt.add_argument("--device", choices=("auto", "cpu", "cuda"))
    opt.add_argument("--seed", type=int)
    opt.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    run = p.add_argument_group("run")
    run.add_argument("--config", metavar="JSON", help="TrainingConfig JSON (flags and --set override it)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any TrainingConfig field")
    run.add_argument("-o", "--output-dir")
    run.add_argument("--resume", nargs="?", const="auto", metavar="CKPT",
                     help="continue from the latest checkpoint in --output-dir (or from CKPT)")
    run.add_argument("--overwrite", action="store_true", help="start afresh even if --output-dir has checkpoints")
    run.add_argument("--save-every", type=int)
    run.add_argument("--log-every", type=int)
    run.add_argument("--keep-checkpoints", type=int)
    run.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard (if installed)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--print-config", action="store_true", help="print the resolved TrainingConfig and exit")
    hub = p.add_argument_group("hub")
    hub.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the final checkpoint to this Hugging Face repo")
    hub.add_argument("--hub-public", action="store_true", help="create the hub repo public (default private)")
    hub.add_argument("--env-file", default="sigma.env", help="settings/token file (default: sigma.env)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _parse_value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def resolve_config(args: argparse.Namespace) -> TrainingConfig:
    values = TrainingConfig().to_dict()
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"--config {path} does not exist")
        values.update(json.loads(path.read_text()))
    for flag, name in FLAG_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            values[name] = value
    if args.no_lora:
        values["use_lora"] = False
    if args.load_in_4bit:
        values["load_in_4bit"] = True
    if args.tensorboard:
        values["tensorboard"] = True
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        values[key.strip()] = _parse_value(raw)
    return TrainingConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = resolve_config(args)
        if args.print_config:
            print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
            return 0
        from ..configuration_sigma import SigmaConfig
        from .trainer import SigmaTrainer

        model_config = None
        if args.model_config:
            if not Path(args.model_config).is_file():
                raise FileNotFoundError(f"--model-config {args.model_config} does not exist")
            model_config = SigmaConfig.load(args.model_config)
        if args.stats:
            from ..data.lerobot_io import normalization_stats

            model_config = SigmaConfig.from_dict({**(model_config or SigmaConfig()).to_dict(),
                                                  **normalization_stats(args.stats)})
        trainer = SigmaTrainer(config, model_config, resume=args.resume, overwrite=args.overwrite)
        counts = trainer.summary()
        print(f"sigma-train: {counts['trainable']:,} of {counts['total']:,} parameters trainable "
              f"(LoRA {counts['lora']:,}, heads {counts['heads_trainable']:,}); device {trainer.device}; "
              f"{len(trainer.dataset)} windows; starting at step {trainer.step}/{config.max_steps}", file=sys.stderr)
        result = trainer.train(progress=not args.no_progress)
        m = result["last_metrics"]
        print(f"sigma-train: done at step {result['step']}: loss {m.get('loss', float('nan')):.4f}, "
              f"L_act {m.get('L_act', float('nan')):.4f}, tau_rms {m.get('tau_rms', float('nan')):.3f}; "
              f"checkpoint {result['checkpoint']}; metrics {Path(config.output_dir) / 'metrics.csv'}")
        if args.push_to_hub:
            from .hub import push_artifacts

            url = push_artifacts(result["checkpoint"], args.push_to_hub, env_file=args.env_file, private=not args.hub_public)
            print(f"sigma-train: pushed to {url}")
    except KeyboardInterrupt:
        print("sigma-train: interrupted (a checkpoint was saved; continue with --resume)", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        parser.exit(2, f"sigma-train: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
