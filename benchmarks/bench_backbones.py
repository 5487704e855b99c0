# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Memory and speed of Sigma on a SmolVLA backbone, and an estimate for pi0.5 (3B).

    python benchmarks/bench_backbones.py                 # CPU: tiny training + inference, real-size inference
    python benchmarks/bench_backbones.py --device=cuda   # GPU: also real-size LoRA + 4-bit training at batch 8
    options: --infer=[tiny,real]  --train=[tiny,real]  --batch=8  --steps=3  --repeats=3  --no_4bit=true  --json=FILE

SmolVLA is LeRobot's SmolVLAPolicy with random weights built from config, no download: "real" is
lerobot/smolvla_base's architecture (SmolVLM2-500M: SigLIP-B/16 at 512 px + pixel-shuffle
connector, SmolLM2-360M's language model cut to 16 layers; action expert at 0.75 width, 50-step
chunk, 10 flow steps), "tiny" the test model. Sigma's heads: the default SigmaConfig structure.
Every measurement runs in a subprocess of its own, so its peak memory is its own (CUDA: peak
allocated; CPU: peak RSS of the process, imports included).

* training: LoRA r=16 on q/k/v/o of the VLM's language model (+ 4-bit NF4 frozen weights on CUDA),
  TRAF + TSAC losses, AdamW, batch --batch; median step time after one warm-up step.
* inference, batch 1: one whole Sigma step (vision + language: the VLA's prefix, Sigma's block
  and the expert's chunk + action + control) against SmolVLA's own select_action right after
  reset() (which samples a whole chunk), medians of --repeats in the same process; plus the
  Sigma step's parts (image encoder, prefix, Sigma block, expert, Sigma's heads).
* pi0.5: PaliGemma-3B + Gemma-300M expert counted on the meta device (LeRobot's configs); each
  part's time scaled from the measured SmolVLA part by (non-embedding parameters x tokens) and
  memory from weight bytes plus the measured non-weight memory scaled by the language model's
  (layers x width x tokens). An estimate, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from sigma_model.cli import check_choice, parse_cli

# lerobot/smolvla_base's VLM, HuggingFaceTB/SmolVLM2-500M-Video-Instruct (SigLIP-B/16-512 + SmolLM2-360M)
SMOLVLM2_500M = dict(
    vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=512,
                patch_size=16),
    text=dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
              num_key_value_heads=5, head_dim=64, max_position_embeddings=8192, vocab_size=49280, rope_theta=100000),
    scale_factor=4,
)
SMOLVLA_BASE = {}  # SmolVLAConfig's defaults are smolvla_base's: 16 VLM layers, chunk 50, 10 flow steps, expert 0.75
TEXTS = ["pick the cube and place it on the left"]


def sigma_config(size: str, policy_dir: Path, **overrides):
    from sigma_model.testing import small_config

    from sigma_model import SigmaConfig

    if size == "tiny":
        return small_config(backbone="smolvla", backbone_path=str(policy_dir), use_audio=False, **overrides)
    return SigmaConfig(backbone="smolvla", backbone_path=str(policy_dir), use_audio=False, image_size=256,
                       chunk_len=50, traj_len=50, **overrides)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fns: dict, repeats: int, device: torch.device, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function over `repeats` rounds after `warmup` rounds.

    Each round calls every function once, in turn, so drifting machine load hits them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def count(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


# ------------------------------------------------------------------ workers
def build(size: str, root: Path) -> dict:
    from sigma_model.testing_vla import TINY_SMOLVLA, TINY_SMOLVLM, save_smolvla

    t0 = time.perf_counter()
    sizes, policy = (TINY_SMOLVLM, TINY_SMOLVLA) if size == "tiny" else (SMOLVLM2_500M, SMOLVLA_BASE)
    path = save_smolvla(root / size, sizes=sizes, policy=policy)
    return {"policy_dir": str(path), "build_s": time.perf_counter() - t0}


def train(size: str, policy_dir: Path, device: torch.device, batch: int, steps: int, use_4bit: bool, out: Path) -> dict:
    from sigma_model.training.configuration_training import TrainingConfig
    from sigma_model.training.trainer import SigmaTrainer

    cfg = TrainingConfig(
        synthetic_samples=batch * (steps + 1),
        batch_size=batch,
        max_steps=steps + 1,
        warmup_steps=0,
        save_every=0,
        output_dir=str(out),
        device=device.type,
        load_in_4bit=use_4bit,
        lora_r=16,
    )
    trainer = SigmaTrainer(cfg, sigma_config(size, policy_dir))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train_step()  # warm-up
    step_s = timed({"step": trainer.train_step}, steps, device, warmup=0)["step"]
    summary = trainer.summary()
    return {"step_s": step_s, "peak_gb": peak_memory_gb(device), "batch": batch, "4bit": use_4bit,
            "params_total": summary["total"], "params_trainable": summary["trainable"], "params_lora": summary["lora"],
            "samples_per_s": batch / step_s}


def infer(size: str, policy_dir: Path, device: torch.device, repeats: int) -> dict:
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from lerobot.policies.smolvla.processor_smolvla import (
        make_smolvla_pre_post_processors,
    )
    from sigma_model.backbones.vla import dataset_stats
    from sigma_model.testing import make_observation

    from sigma_model import SigmaModel

    torch.manual_seed(0)
    model = SigmaModel(sigma_config(size, policy_dir)).eval().to(device)
    c = model.config
    obs = make_observation(c, batch=1)
    obs.image, obs.robot_state, obs.audio = obs.image.to(device), obs.robot_state.to(device), None
    text = model.tokenize(TEXTS)
    policy = SmolVLAPolicy.from_pretrained(str(policy_dir)).eval().to(device)
    pre, _ = make_smolvla_pre_post_processors(policy.config, dataset_stats(c))
    batch = pre({"observation.images.front": obs.image.float() / 255.0, "observation.state": obs.robot_state.cpu(),
                 "task": TEXTS})
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    vla = model.language.backbone

    def smolvla_chunk():
        policy.reset()
        policy.select_action(batch)

    with torch.inference_mode():
        vis = model.vision_stage(obs)
        context = vla.prefix(text, vis.backbone_image_tokens, obs.robot_state)
        lang = model.language_stage(text, vis.vision_tokens, vis.state_tokens, None,
                                    image_tokens=vis.backbone_image_tokens, robot_state=obs.robot_state)
        times = timed({
            "smolvla_select_action": smolvla_chunk,
            "sigma_step": lambda: model(obs, text),
            "image_encoder": lambda: model.vision.image_encoder(obs.image.float() / 255.0),
            "vision_stage": lambda: model.vision_stage(obs),
            "vla_prefix": lambda: vla.prefix(text, vis.backbone_image_tokens, obs.robot_state),
            "sigma_block": lambda: model.language.hidden_sequence(text, vis.vision_tokens, vis.state_tokens, context),
            "language_stage_no_expert": lambda: model.language_stage(
                text, vis.vision_tokens, vis.state_tokens, None, image_tokens=vis.backbone_image_tokens,
                robot_state=obs.robot_state, with_actions=False),
            "vla_expert": lambda: vla.sample_actions(context),
            "action_stage": lambda: model.action_stage(lang.high_level_rep, lang.high_level_mask, lang.tau,
                                                       vis.state_tokens, backbone_actions=lang.backbone_actions),
        }, repeats, device)
    # Sigma's own heads: the vision workspace past the encoder, the language heads past the VLA, the action stage
    times["sigma_heads"] = (
        max(0.0, times.pop("vision_stage") - times["image_encoder"])
        + max(0.0, times.pop("language_stage_no_expert") - times["vla_prefix"] - times["sigma_block"])
        + times.pop("action_stage")
    )
    vwe = policy.model.vlm_with_expert
    vlm = vwe.get_vlm_model()
    text_model = vlm.text_model
    params = {
        "vision": count(vlm.vision_model) + count(vlm.connector),
        "language": count(text_model) - count(text_model.embed_tokens),
        "expert": count(vwe.lm_expert),
        "sigma_heads": sum(p.numel() for n, p in model.named_parameters()
                           if not n.startswith(("language.backbone.", "vision.image_encoder."))),
        "smolvla_total": count(policy),
    }
    vision_config = vwe.config.vision_config
    tokens = {"patches": (vision_config.image_size // vision_config.patch_size) ** 2,
              "prefix": int(context.pad_mask.shape[1]),
              "block": int(text.ids.shape[1] + c.n_vision_tokens + c.n_state_tokens),
              "expert": vla.action_horizon * int(policy.config.num_steps)}
    language_config = vwe.config.text_config
    return {"times_s": times, "params": params, "tokens": tokens, "peak_gb": peak_memory_gb(device),
            "overhead": times["sigma_step"] / times["smolvla_select_action"] - 1.0,
            "layers_x_width": len(text_model.layers) * language_config.hidden_size}


def pi05_parameters() -> dict:
    """pi0.5's parts as LeRobot 0.4.4 builds them (PaliGemma with gemma_2b + gemma_300m expert), on the meta device."""
    from lerobot.policies.pi05.modeling_pi05 import get_gemma_config
    from transformers import (
        GemmaConfig,
        GemmaForCausalLM,
        PaliGemmaForConditionalGeneration,
    )
    from transformers.models.auto import CONFIG_MAPPING

    vlm, expert = get_gemma_config("gemma_2b"), get_gemma_config("gemma_300m")
    config = CONFIG_MAPPING["paligemma"]()
    config.text_config.update(
        dict(
            hidden_size=vlm.width,
            intermediate_size=vlm.mlp_dim,
            num_attention_heads=vlm.num_heads,
            head_dim=vlm.head_dim,
            num_hidden_layers=vlm.depth,
            num_key_value_heads=vlm.num_kv_heads,
            vocab_size=257152,
        )
    )
    config.vision_config.update(dict(image_size=224, intermediate_size=4304, projection_dim=2048))
    with torch.device("meta"):
        paligemma = PaliGemmaForConditionalGeneration(config)
        gemma = GemmaForCausalLM(GemmaConfig(hidden_size=expert.width, intermediate_size=expert.mlp_dim,
                                             num_attention_heads=expert.num_heads, head_dim=expert.head_dim,
                                             num_hidden_layers=expert.depth, num_key_value_heads=expert.num_kv_heads,
                                             vocab_size=257152))
    language = paligemma.model.language_model
    patches = (224 // config.vision_config.patch_size) ** 2  # = image tokens (no pixel shuffle)
    return {
        "params": {"vision": count(paligemma.model.vision_tower) + count(paligemma.model.multi_modal_projector),
                   "language": count(language) - count(language.embed_tokens),
                   "expert": count(gemma.model.layers) + count(gemma.model.norm),
                   "embeddings": count(language.embed_tokens),
                   "total": count(paligemma.model) + count(gemma.model.layers) + count(gemma.model.norm)},
        "tokens": {"patches": patches, "prefix": patches + 200, "expert": 50 * 10},  # 200-token prompt, 10 steps
        "layers_x_width": vlm.depth * vlm.width,
    }


def estimate_pi05(smol: dict, pi: dict, train: dict | None) -> dict:
    """pi0.5 step parts = SmolVLA's measured parts x (non-embedding params x tokens) ratio; Sigma's heads as measured.

    Training peak = pi0.5's frozen weights in the measured run's precision + the run's measured non-weight memory x the
    language models' (layers x width x prefix tokens) ratio.
    """
    t, sp, st = smol["times_s"], smol["params"], smol["tokens"]
    pp, pt = pi["params"], pi["tokens"]

    def scale(part, p_key, t_key):
        return t[part] * (pp[p_key] * pt[t_key]) / (sp[p_key] * st[t_key])

    parts = {"image_encoder": scale("image_encoder", "vision", "patches"),
             "vla_prefix": scale("vla_prefix", "language", "prefix"),
             "sigma_block": t["sigma_block"] * pp["language"] / sp["language"],  # same block length
             "vla_expert": scale("vla_expert", "expert", "expert"),
             "sigma_heads": t["sigma_heads"]}
    own = parts["image_encoder"] + parts["vla_prefix"] + parts["vla_expert"]
    out = {
        "step_s": sum(parts.values()),
        "pi05_own_s": own,
        "overhead": (parts["sigma_block"] + parts["sigma_heads"]) / own,
        "parts_s": parts,
        "params_total": pp["total"],
        "weights_gb_bf16": pp["total"] * 2 / 2**30,
        "weights_gb_nf4": pp["total"] * 0.5 / 2**30,
    }
    if train is not None:
        bytes_per = 0.5 if train["4bit"] else 4.0
        rest = max(0.0, train["peak_gb"] - sp["smolvla_total"] * bytes_per / 2**30)
        ratio = (pi["layers_x_width"] * pt["prefix"]) / (smol["layers_x_width"] * st["prefix"])
        out["train_peak_gb"] = pp["total"] * bytes_per / 2**30 + rest * ratio
        out["train_4bit"] = train["4bit"]
    return out


# ------------------------------------------------------------------- driver
def run_worker(args: list[str], threads: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--worker", *args]
    env = dict(os.environ, **({"SIGMA_BENCH_THREADS": str(threads)} if threads else {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def worker(argv: list[str]) -> None:
    task, size, root, device = argv[0], argv[1], Path(argv[2]), torch.device(argv[3])
    if os.environ.get("SIGMA_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["SIGMA_BENCH_THREADS"]))
    if task == "build":
        result = build(size, root)
    elif task == "train":
        result = train(size, Path(argv[4]), device, int(argv[5]), int(argv[6]), argv[7] == "1", root / f"run_{size}")
    else:
        result = infer(size, Path(argv[4]), device, int(argv[5]))
    print(json.dumps(result))


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "CPU")
    return f"{cpu}, {torch.get_num_threads()} threads (torch {torch.__version__})"


PROG = "python benchmarks/bench_backbones.py"


@dataclass
class Options:
    device: str = "cpu"  # cpu or cuda
    infer: list[str] = field(default_factory=lambda: ["tiny", "real"])  # SmolVLA sizes to time inference of
    train: list[str] | None = None  # sizes to train (default: [tiny] on the CPU, [tiny,real] on CUDA)
    batch: int = 8
    steps: int = 3
    repeats: int = 5
    no_4bit: bool = False  # train with full-precision frozen weights on CUDA too
    threads: int = 0  # CPU threads per measurement (0: torch's default; 1 avoids OpenMP spinning on a busy machine)
    json: str | None = None  # also write the figures here

    def __post_init__(self) -> None:
        check_choice("--device", self.device, ("cpu", "cuda"))
        for size in [*self.infer, *(self.train or ())]:
            check_choice("--infer and --train sizes", size, ("tiny", "real"))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1:])
        return
    args = parse_cli(Options, argv, PROG, description=__doc__)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device=cuda: no CUDA GPU here")
    device = torch.device(args.device)
    train_sizes = args.train if args.train is not None else (["tiny", "real"] if device.type == "cuda" else ["tiny"])
    use_4bit = device.type == "cuda" and not args.no_4bit
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).parent).stdout.strip()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine(device)}; commit {commit or '?'}")
    results: dict = {"machine": machine(device), "commit": commit, "device": device.type}
    with tempfile.TemporaryDirectory(prefix="bench_backbones_") as tmp:
        dirs = {}
        for size in sorted(set(args.infer) | set(train_sizes)):
            built = run_worker(["build", size, tmp, "cpu"])
            dirs[size] = built["policy_dir"]
            print(f"built a random {size} SmolVLA in {built['build_s']:.0f} s")
        for size in train_sizes:
            r = run_worker(["train", size, tmp, device.type, dirs[size], str(args.batch), str(args.steps),
                            "1" if use_4bit else "0"], args.threads)
            results[f"train_{size}"] = r
            print(f"train {size:<4} LoRA r=16{' + 4-bit' if r['4bit'] else ''}, batch {r['batch']}: "
                  f"{r['step_s']:.3f} s/step ({r['samples_per_s']:.1f} samples/s), peak {r['peak_gb']:.2f} GB, "
                  f"trainable {r['params_trainable']:,} of {r['params_total']:,} (LoRA {r['params_lora']:,})")
        for size in args.infer:
            r = run_worker(["infer", size, tmp, device.type, dirs[size], str(args.repeats)], args.threads)
            results[f"infer_{size}"] = r
            t = r["times_s"]
            print(f"infer {size:<4} batch 1: Sigma step {t['sigma_step'] * 1e3:.1f} ms vs SmolVLA select_action "
                  f"{t['smolvla_select_action'] * 1e3:.1f} ms: Sigma adds {100 * r['overhead']:+.1f}% "
                  f"(goal <= +10%); peak {r['peak_gb']:.2f} GB")
            print("   parts: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items()
                                          if k not in ("sigma_step", "smolvla_select_action")))
    base = "real" if "real" in args.infer else None  # the tiny model's parts do not scale to 3B
    if base is not None:
        pi = pi05_parameters()
        train = results.get(f"train_{base}")
        est = estimate_pi05(results[f"infer_{base}"], pi, train)
        results["pi05_estimate"] = est
        print(f"pi0.5 estimate from the {base} SmolVLA ({pi['params']['total'] / 1e9:.2f} B parameters): Sigma step "
              f"{est['step_s'] * 1e3:.0f} ms vs pi0.5's own {est['pi05_own_s'] * 1e3:.0f} ms (Sigma adds "
              f"{100 * est['overhead']:+.1f}%); frozen weights {est['weights_gb_bf16']:.1f} GB bf16, "
              f"{est['weights_gb_nf4']:.1f} GB NF4"
              + (f"; LoRA{' + 4-bit' if est['train_4bit'] else ''} training peak at batch {args.batch} "
                 f"~{est['train_peak_gb']:.1f} GB" if "train_peak_gb" in est else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
