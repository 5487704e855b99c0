"""``sigma-preprocess``: LeRobot dataset -> Sigma training shards (paper section 4.1).

Pipeline: ``load_sigma_env`` -> ``load_lerobot_dataset`` (LeRobot's ``LeRobotDataset``; cache
prefetch with backoff) -> ``safe_iter_dataset`` -> group by episode, sort by frame -> sliding
windows (``horizon_T``) -> ``pick_*`` -> ``compute_action_stats`` -> drop windows with average action
L2 < ``min_action_norm`` -> ``ShardWriter`` (``shard_00000.safetensors`` ..., ``meta.json``).

Re-running the same command after an interruption resumes: full shards on disk are kept and their
windows skipped; the result is identical to an uninterrupted run.  Changing a preprocessing parameter
for an existing output directory is refused unless ``--overwrite`` is given.

Example::

    sigma-preprocess lerobot/svla_so101_pickplace --out-dir shards/pickplace --env-file sigma.env
    sigma-preprocess ./my_local_lerobot_dataset --out-dir shards/local --horizon 16 --min-action-norm 0.5
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .env_file import DEFAULT_ENV_FILE, SigmaEnv, load_sigma_env
from .lerobot_source import DatasetUnavailableError, FrameSource, RetryPolicy, load_lerobot_dataset
from .shards import META_FILENAME, ShardCorruptError, ShardWriter, load_meta
from .windows import WindowConfig, WindowStats, hold_state_baseline, iter_window_samples

log = logging.getLogger("sigma_model.data.preprocess")

__all__ = ["PREPROCESS_VERSION", "PreprocessMismatchError", "preprocess_dataset", "build_arg_parser", "main",
           "resolve_baseline_policy"]

PREPROCESS_VERSION = 1
BUILTIN_BASELINES: dict[str, Callable] = {"hold_state": hold_state_baseline}


class PreprocessMismatchError(RuntimeError):
    """The output directory holds shards made with different parameters or from another dataset."""


def resolve_baseline_policy(spec: str | None) -> Callable | None:
    """``None`` | ``"hold_state"`` | ``"package.module:callable"`` (a factory is called if it takes no
    sample: the callable must map a sample dict to ``{action_vector, action_chunk, action_trajectory}``)."""
    if not spec or spec == "none":
        return None
    if spec in BUILTIN_BASELINES:
        return BUILTIN_BASELINES[spec]
    if ":" not in spec:
        raise ValueError(f"baseline policy must be one of {sorted(BUILTIN_BASELINES)} or 'module:callable', got {spec!r}")
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
    if existing is not None:
        if existing.get("params") != params:
            old = existing.get("params") or {}
            diff = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
            raise PreprocessMismatchError(
                f"{out / META_FILENAME} was written with different parameters ({', '.join(diff)}); "
                "use another --out-dir or pass --overwrite")
        old_ds, new_ds = existing.get("dataset") or {}, source.describe()
        changed = [k for k in ("total_episodes", "total_frames", "selected_frames", "fps")
                   if k in old_ds and old_ds.get(k) != new_ds.get(k)]
        if changed:
            raise PreprocessMismatchError(
                f"{out / META_FILENAME} was made from a different version of the dataset "
                f"({', '.join(f'{k}: {old_ds.get(k)} -> {new_ds.get(k)}' for k in changed)}); "
                "use another --out-dir or pass --overwrite")
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
            "the source changed - use --overwrite")

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
    """A complete run's shards must all be present and intact (cheap header/size check)."""
    from .shards import read_shard_header  # noqa: PLC0415

    for entry in meta.get("shards", []):
        p = out / entry["file"]
        if not p.exists():
            raise ShardCorruptError(f"shard {p} listed in meta.json is missing; rerun with --overwrite")
        n = read_shard_header(p)["num_samples"]
        if n != entry.get("num_samples"):
            raise ShardCorruptError(f"shard {p} holds {n} samples, meta.json says {entry.get('num_samples')}; "
                                    "rerun with --overwrite")


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

def _image_size(text: str) -> tuple[int, int] | None:
    t = text.lower().strip()
    if t in ("0", "none", "native", "keep"):
        return None
    if "x" in t:
        h, w = t.split("x", 1)
        return int(h), int(w)
    return int(t), int(t)


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sigma-preprocess",
        description="Convert a LeRobot dataset (hub id or local directory) into Sigma training shards "
                    "(sliding windows, static-window filtering, shard_*.safetensors + meta.json). "
                    "Re-running resumes an interrupted run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dataset", nargs="?", default=None,
                   help="hub dataset id (e.g. lerobot/svla_so101_pickplace) or local dataset directory; "
                        "default: SIGMA_DATASET from the env file")
    p.add_argument("--out-dir", "-o", default=None, help="output shard directory (default: SIGMA_SHARD_DIR)")
    p.add_argument("--env-file", default=DEFAULT_ENV_FILE, help="settings / HF token file (missing file is ignored)")
    p.add_argument("--horizon", "--horizon-T", dest="horizon", type=int, default=16, help="window length T")
    p.add_argument("--stride", type=int, default=1, help="window stride (frames)")
    p.add_argument("--chunk-len", type=int, default=None, help="gt_action_chunk length (default: horizon)")
    p.add_argument("--min-action-norm", type=float, default=1e-3,
                   help="drop windows whose average action L2 norm is below this")
    p.add_argument("--action-norm-mode", choices=("absolute", "delta"), default="absolute",
                   help="L2 of the actions themselves (paper) or of their per-step changes")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard file")
    p.add_argument("--image-size", type=_image_size, default=(96, 96),
                   help="resize images to HxW (or N for NxN; 0 keeps the dataset size)")
    p.add_argument("--image-key", default=None, help="camera feature (default: auto, e.g. observation.images.front)")
    p.add_argument("--state-key", default=None, help="state feature (default: auto, observation.state)")
    p.add_argument("--action-key", default=None, help="action feature (default: auto, action)")
    p.add_argument("--text-key", default=None, help="text feature (default: auto, task)")
    p.add_argument("--default-text", default="", help="text when the dataset has none")
    p.add_argument("--max-episodes", type=int, default=None, help="only the first N episodes")
    p.add_argument("--episodes", type=lambda s: [int(x) for x in s.split(",") if x.strip()], default=None,
                   help="comma-separated episode indices")
    p.add_argument("--revision", default=None,
                   help="hub revision (default: SIGMA_DATASET_REVISION, else LeRobot's codebase-version tag)")
    p.add_argument("--download-root", default=None,
                   help="download directory for hub datasets (default: $HF_LEROBOT_HOME/<repo_id>)")
    p.add_argument("--baseline-policy", default=None,
                   help="add base_action_* from 'hold_state' or a 'module:callable' policy")
    p.add_argument("--buffer-all-episodes", action="store_true",
                   help="group frames of non-contiguously stored episodes (buffers the dataset in memory)")
    p.add_argument("--max-retries", type=int, default=None, help="retries per step on HTTP 429 / transient errors")
    p.add_argument("--overwrite", action="store_true", help="delete existing shards in --out-dir first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        env: SigmaEnv = load_sigma_env(args.env_file)
    except (ValueError, OSError) as e:
        parser.error(str(e))
    dataset = args.dataset or env.get("SIGMA_DATASET") or os.environ.get("SIGMA_DATASET")
    out_dir = args.out_dir or env.get("SIGMA_SHARD_DIR") or os.environ.get("SIGMA_SHARD_DIR")
    if not dataset:
        parser.error("no dataset given (positional argument or SIGMA_DATASET in the env file)")
    if not out_dir:
        parser.error("no output directory given (--out-dir or SIGMA_SHARD_DIR in the env file)")
    try:
        cfg = WindowConfig(horizon_T=args.horizon, stride=args.stride, chunk_len=args.chunk_len,
                           min_action_norm=args.min_action_norm, action_norm_mode=args.action_norm_mode,
                           image_size=args.image_size, image_key=args.image_key, state_key=args.state_key,
                           action_key=args.action_key, text_key=args.text_key, default_text=args.default_text)
    except ValueError as e:
        parser.error(str(e))
    if args.shard_size < 1:
        parser.error("--shard-size must be >= 1")
    policy = RetryPolicy.from_env(env, max_retries=args.max_retries)
    revision = args.revision or env.get("SIGMA_DATASET_REVISION") or None
    download_root = args.download_root or env.get("SIGMA_DATASET_ROOT") or None
    try:
        meta = preprocess_dataset(
            dataset, out_dir, cfg, shard_size=args.shard_size, max_episodes=args.max_episodes,
            episodes=args.episodes, revision=revision, download_root=download_root,
            baseline_policy=args.baseline_policy, buffer_all_episodes=args.buffer_all_episodes,
            overwrite=args.overwrite, progress=not args.no_progress, retry_policy=policy)
    except KeyboardInterrupt:
        print("sigma-preprocess: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (DatasetUnavailableError, PreprocessMismatchError, ShardCorruptError, FileNotFoundError, KeyError,
            ValueError, ImportError) as e:
        print(f"sigma-preprocess: error: {e}", file=sys.stderr)
        return 1
    w = meta.get("windows") or {}
    print(f"sigma-preprocess: {meta['num_samples']} samples in {meta['num_shards']} shards -> {out_dir} "
          f"(windows: {w.get('windows_total')}, dropped static: {w.get('windows_dropped_static')})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
