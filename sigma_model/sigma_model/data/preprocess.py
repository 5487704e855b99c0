# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
r"""``sigma-preprocess``: LeRobot dataset -> Sigma training shards (paper section 4.1).

Pipeline: ``load_sigma_env`` -> ``load_lerobot_dataset`` (LeRobot's ``LeRobotDataset``; cache
prefetch with backoff) -> ``safe_iter_dataset`` -> group by episode, sort by frame -> sliding
windows (``horizon_T``) -> ``pick_*`` -> ``compute_action_stats`` -> drop windows with average action
L2 < ``min_action_norm`` -> ``ShardWriter`` (``shard_00000.safetensors`` ..., ``meta.json``).

Re-running the same command after an interruption resumes: full shards on disk are kept and their
windows skipped; the result is identical to an uninterrupted run.  Changing a preprocessing parameter
for an existing output directory, or shards without their ``meta.json`` (parameters unknown), is
refused unless ``--overwrite=true`` is given.

Example::

    sigma-preprocess --dataset=lerobot/svla_so101_pickplace --out_dir=shards/pickplace --env_file=sigma.env
    sigma-preprocess --dataset=./my_local_lerobot_dataset --out_dir=shards/local --window.horizon_T=16 \
        --window.min_action_norm=0.5 --window.image_size=[64,64]

Every field of ``PreprocessCLI`` is ``--field=...`` and every ``WindowConfig`` field ``--window.<field>=...``;
``--config_path=FILE`` (YAML or JSON) sets the starting values and flags override it (draccus).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cli import fail, parse_cli
from .env_file import DEFAULT_ENV_FILE, SigmaEnv, load_sigma_env
from .lerobot_source import DatasetUnavailableError, FrameSource, RetryPolicy, load_lerobot_dataset
from .shards import META_FILENAME, ShardCorruptError, ShardWriter, list_shards, load_meta
from .windows import WindowConfig, WindowStats, hold_state_baseline, iter_window_samples

log = logging.getLogger("sigma_model.data.preprocess")

__all__ = ["PREPROCESS_VERSION", "PreprocessMismatchError", "preprocess_dataset", "PreprocessCLI", "main",
           "resolve_baseline_policy"]

PROG = "sigma-preprocess"
PREPROCESS_VERSION = 1
BUILTIN_BASELINES: dict[str, Callable] = {"hold_state": hold_state_baseline}


class PreprocessMismatchError(RuntimeError):
    """The output directory holds shards made with different parameters or from another dataset."""


def resolve_baseline_policy(spec: str | None) -> Callable | None:
    """Resolve the baseline policy ``None`` | ``"hold_state"`` | ``"package.module:callable"``.

    A factory is called if it takes no sample: the callable must map a sample dict to
    ``{action_vector, action_chunk, action_trajectory}``.
    """
    if not spec or spec == "none":
        return None
    if spec in BUILTIN_BASELINES:
        return BUILTIN_BASELINES[spec]
    if ":" not in spec:
        raise ValueError(
            f"baseline policy must be one of {sorted(BUILTIN_BASELINES)} or 'module:callable', got {spec!r}"
        )
    mod, _, name = spec.partition(":")
    obj = getattr(importlib.import_module(mod), name)
    if not callable(obj):
        raise ValueError(f"{spec} is not callable")
    return obj


def _params(dataset_id: str, cfg: WindowConfig, shard_size: int, max_episodes: int | None,
            episodes: list[int] | None, baseline: str | None, buffer_all: bool) -> dict[str, Any]:
    return {
        "dataset": dataset_id,
        "window": cfg.to_dict(),
        "shard_size": int(shard_size),
        "max_episodes": max_episodes,
        "episodes": episodes,
        "baseline_policy": baseline,
        "buffer_all_episodes": bool(buffer_all),
        "preprocess_version": PREPROCESS_VERSION,
    }


def preprocess_dataset(
    dataset: str | os.PathLike | FrameSource,
    out_dir: str | os.PathLike,
    config: WindowConfig | None = None,
    *,
    shard_size: int = 1000,
    max_episodes: int | None = None,
    episodes: list[int] | None = None,
    revision: str | None = None,
    download_root: str | os.PathLike | None = None,
    baseline_policy: Callable | str | None = None,
    buffer_all_episodes: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    retry_policy: RetryPolicy | None = None,
    on_sample_written: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the whole preprocessing; returns the final ``meta.json`` content.

    ``on_sample_written(n)`` is called after the n-th sample (global count) is handed to the writer;
    tests use it to simulate an interruption.
    """
    cfg = config or WindowConfig()
    out = Path(out_dir)
    baseline_name = baseline_policy if isinstance(baseline_policy, str) else (
        None if baseline_policy is None else getattr(baseline_policy, "__qualname__", repr(baseline_policy)))
    policy_fn = resolve_baseline_policy(baseline_policy) if isinstance(baseline_policy, str) else baseline_policy

    if isinstance(dataset, FrameSource):
        source = dataset
    else:
        source = load_lerobot_dataset(dataset, revision=revision, root=download_root,
                                      episodes=episodes, max_episodes=max_episodes, policy=retry_policy)
    params = _params(source.dataset_id, cfg, shard_size, max_episodes, episodes, baseline_name, buffer_all_episodes)

    existing = None if overwrite else load_meta(out)
    if existing is None and not overwrite and list_shards(out):
        raise PreprocessMismatchError(
            f"{out} holds shards but no {META_FILENAME}, so the parameters they were made with are unknown; "
            "use another --out_dir or pass --overwrite=true to replace them")
    if existing is not None:
        if existing.get("params") != params:
            old = existing.get("params") or {}
            diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
            raise PreprocessMismatchError(
                f"{out / META_FILENAME} was written with different parameters ({', '.join(diff)}); "
                "use another --out_dir or pass --overwrite=true")
        old_ds, new_ds = existing.get("dataset") or {}, source.describe()
        changed = [k for k in ("total_episodes", "total_frames", "selected_frames", "fps")
                   if k in old_ds and old_ds.get(k) != new_ds.get(k)]
        if changed:
            raise PreprocessMismatchError(
                f"{out / META_FILENAME} was made from a different version of the dataset "
                f"({', '.join(f'{k}: {old_ds.get(k)} -> {new_ds.get(k)}' for k in changed)}); "
                "use another --out_dir or pass --overwrite=true")
        if existing.get("complete"):
            _check_complete_output(out, existing)
            log.info("%s is already complete (%d samples in %d shards); nothing to do",
                     out, existing.get("num_samples", 0), existing.get("num_shards", 0))
            return existing

    writer = ShardWriter(out, shard_size, resume=True, overwrite=overwrite)
    skip = writer.skip_count
    base_meta: dict[str, Any] = {
        "dataset": source.describe(),
        "params": params,
    }
    writer.write_meta({**base_meta, "windows": None, "episodes": None}, complete=False)
    if skip:
        log.info("resuming: %d samples in %d shards already written; skipping them", skip, len(writer.shards))

    stats = WindowStats()
    keys: dict[str, Any] = {}
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm  # noqa: PLC0415

            bar = tqdm(total=len(source) or None, unit="frame", desc="sigma-preprocess", dynamic_ncols=True)
        except ImportError:  # pragma: no cover
            bar = None

    def frames():
        for fr in source:
            if bar is not None:
                bar.update(1)
                if stats.frames_seen % 256 == 0:
                    bar.set_postfix(kept=stats.windows_kept, dropped=stats.windows_dropped_static, refresh=False)
            yield fr

    written = skip
    try:
        for sample in iter_window_samples(frames(), cfg, stats=stats, baseline_policy=policy_fn,
                                          buffer_all=buffer_all_episodes, keys_out=keys, skip=skip):
            writer.add(sample)
            written += 1
            if on_sample_written is not None:
                on_sample_written(written)
    except BaseException:
        writer.abandon()
        if bar is not None:
            bar.close()
        raise
    if bar is not None:
        bar.set_postfix(kept=stats.windows_kept, dropped=stats.windows_dropped_static)
        bar.close()
    if stats.windows_kept < skip:
        raise PreprocessMismatchError(
            f"{out} holds {skip} samples but the dataset now yields only {stats.windows_kept} windows; "
            "the source changed - use --overwrite=true")

    sd = stats.to_dict()
    final = {
        **base_meta,
        "keys": keys,
        "episodes": {
            "seen": sd["episodes_seen"],
            "too_short": sd["episodes_too_short"],
            "with_kept_windows": sd["episodes_with_kept_windows"],
            "per_episode": sd.pop("per_episode"),
        },
        "windows": {k: v for k, v in sd.items() if not k.startswith("episodes")},
        "sample_keys": _sample_key_shapes(writer),
    }
    meta = writer.close(final)
    assert meta is not None
    log.info("wrote %d samples in %d shards to %s (%d windows, %d dropped as static)", meta["num_samples"],
             meta["num_shards"], out, sd["windows_total"], sd["windows_dropped_static"])
    return meta


def _check_complete_output(out: Path, meta: dict[str, Any]) -> None:
    """Return a complete run's shards must all be present and intact (cheap header/size check)."""
    from .shards import read_shard_header  # noqa: PLC0415

    for entry in meta.get("shards", []):
        p = out / entry["file"]
        if not p.exists():
            raise ShardCorruptError(f"shard {p} listed in meta.json is missing; rerun with --overwrite=true")
        n = read_shard_header(p)["num_samples"]
        if n != entry.get("num_samples"):
            raise ShardCorruptError(f"shard {p} holds {n} samples, meta.json says {entry.get('num_samples')}; "
                                    "rerun with --overwrite=true")


def _sample_key_shapes(writer: ShardWriter) -> dict[str, Any]:
    """Per-sample key -> {dtype (safetensors code), shape}; from shard 0 if written, else the buffer."""
    import torch  # noqa: PLC0415

    from .shards import read_shard_header  # noqa: PLC0415

    out: dict[str, Any] = {}
    if writer.shards:
        hdr = read_shard_header(writer.out_dir / writer.shards[0]["file"])
        for k, v in sorted(hdr["tensors"].items()):
            if not k.startswith("text_"):
                out[k] = {"dtype": v["dtype"], "shape": list(v["shape"][1:])}
    elif writer.num_buffered:
        codes = {torch.uint8: "U8", torch.float32: "F32", torch.int64: "I64", torch.float64: "F64",
                 torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32", torch.bool: "BOOL"}
        for k, v in sorted(writer._buffer[0].items()):
            if isinstance(v, torch.Tensor):
                out[k] = {"dtype": codes.get(v.dtype, str(v.dtype)), "shape": list(v.shape)}
    if out:
        out["text"] = {"dtype": "str", "shape": []}
    return out


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------

@dataclass
class PreprocessCLI:
    """sigma-preprocess's command line: the source, the windows (window) and the shards."""

    # hub dataset id (e.g. lerobot/svla_so101_pickplace) or local dataset directory (default: SIGMA_DATASET)
    dataset: str | None = None
    out_dir: str | None = None  # output shard directory (default: SIGMA_SHARD_DIR)
    env_file: str = DEFAULT_ENV_FILE  # settings / HF token file (a missing file is ignored)
    # horizon_T, stride, chunk_len, static-window filter, image_size ([H, W] or null to keep), feature keys
    window: WindowConfig = field(default_factory=WindowConfig)
    shard_size: int = 1000  # samples per shard file
    max_episodes: int | None = None  # only the first N episodes (N >= 1)
    episodes: list[int] | None = None  # episode indices, e.g. [0,3,7]
    revision: str | None = None  # hub revision (default: SIGMA_DATASET_REVISION, else LeRobot's codebase-version tag)
    download_root: str | None = None  # download directory for hub datasets (default: $HF_LEROBOT_HOME/<repo_id>)
    baseline_policy: str | None = None  # add base_action_* from 'hold_state' or a 'module:callable' policy
    buffer_all_episodes: bool = False  # group frames of non-contiguously stored episodes (buffers the dataset)
    max_retries: int | None = None  # retries per step on HTTP 429 / transient errors
    overwrite: bool = False  # delete existing shards in out_dir first
    progress: bool = True  # progress bar
    verbose: bool = False  # debug logging

    def __post_init__(self) -> None:
        if isinstance(self.shard_size, bool) or not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise ValueError(f"--shard_size must be >= 1, got {self.shard_size!r}")


def main(argv: list[str] | None = None) -> int:
    cli = parse_cli(PreprocessCLI, argv, PROG, description=__doc__)
    logging.basicConfig(level=logging.DEBUG if cli.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        env: SigmaEnv = load_sigma_env(cli.env_file)
    except (ValueError, OSError) as e:
        fail(PROG, e)
    dataset = cli.dataset or env.get("SIGMA_DATASET") or os.environ.get("SIGMA_DATASET")
    out_dir = cli.out_dir or env.get("SIGMA_SHARD_DIR") or os.environ.get("SIGMA_SHARD_DIR")
    if not dataset:
        fail(PROG, "no dataset given (--dataset or SIGMA_DATASET in the env file)")
    if not out_dir:
        fail(PROG, "no output directory given (--out_dir or SIGMA_SHARD_DIR in the env file)")
    policy = RetryPolicy.from_env(env, max_retries=cli.max_retries)
    revision = cli.revision or env.get("SIGMA_DATASET_REVISION") or None
    download_root = cli.download_root or env.get("SIGMA_DATASET_ROOT") or None
    try:
        meta = preprocess_dataset(
            dataset, out_dir, cli.window, shard_size=cli.shard_size, max_episodes=cli.max_episodes,
            episodes=cli.episodes, revision=revision, download_root=download_root,
            baseline_policy=cli.baseline_policy, buffer_all_episodes=cli.buffer_all_episodes,
            overwrite=cli.overwrite, progress=cli.progress, retry_policy=policy)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (DatasetUnavailableError, PreprocessMismatchError, ShardCorruptError, OSError, KeyError,
            ValueError, ImportError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    w = meta.get("windows") or {}
    print(f"{PROG}: {meta['num_samples']} samples in {meta['num_shards']} shards -> {out_dir} "
          f"(windows: {w.get('windows_total')}, dropped static: {w.get('windows_dropped_static')})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
