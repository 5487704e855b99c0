# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""SigmaPolicy: sigma_model.SigmaModel as a LeRobot policy.

Training (`forward`): `sigma_batch` maps a LeRobot batch to the window sample sigma-train reads from
its shards (sigma_model/data/windows.py, training/batching.py), and the loss is
`sigma_model.training.trainer.compute_losses`, the function sigma-train calls: TRAF + flow +
TSAC, weighted by the curriculum at `curriculum_step`. lerobot-train calls `update()` after each
optimiser step, which advances it; it is a buffer, saved with the weights, so a resumed run carries
on with the curriculum where it stopped.

Acting: `predict_action_chunk` runs one plan (vision -> language -> action on the current frame, with
tau and the semantic memory of the previous plan) and returns the fused targets phi(vector, chunk,
trajectory) of its first n_action_steps control ticks; `select_action` queues them, as the closed-loop
evaluation and the ROS controller run a plan for n_action_steps ticks; `reset` clears tau, memory
and the queue; a batch of another size before `reset` is refused (a new episode starts with `reset`, LeRobot's
convention). States and actions are in the processors' normalised units; images are uint8 or float in [0, 1]
(float16/float64 are cast to float32, as states are).

LeRobot datasets and robots carry no audio: a model with `use_audio` hears silence (a zero chunk) in
training and acting, as the simulator's runtime feeds it (closed-loop evaluation, sim node).
"""

from __future__ import annotations

import unicodedata
from collections import deque
from pathlib import Path

import torch
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_STATE
from safetensors import SafetensorError
from sigma_model.modeling_sigma import SigmaModel
from sigma_model.training.batching import observation_from_batch
from sigma_model.training.curriculum import Curriculum
from sigma_model.training.lora import prepare_finetuning
from sigma_model.training.trainer import compute_losses
from torch import Tensor

from .configuration_sigma import SigmaConfig
from .processor_sigma import check_saved_processors

#: how far a float image may stray outside [0, 1] (resampling overshoot) before it is refused
IMAGE_RANGE_TOLERANCE = 1e-3
#: how many of the missing / unexpected weights a loading error names
NAMED_KEYS = 5


def load_problems(err: RuntimeError) -> str | None:
    """Return load_state_dict's error (a header, then one line per problem) as one line; None for another error.

    A list of keys keeps its first NAMED_KEYS names and its count; past two problems, their number.
    """
    head, *problems = [line.strip() for line in str(err).splitlines() if line.strip()] or [""]
    if not head.startswith("Error(s) in loading state_dict") or not problems:
        return None
    for i, line in enumerate(problems):
        kind, _, keys = line.partition(" key(s) in state_dict: ")
        names = keys.split(", ")
        if keys and len(names) > NAMED_KEYS:
            problems[i] = f"{kind} key(s) in state_dict: {', '.join(names[:NAMED_KEYS])}, ... ({len(names)} in all)"
    more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
    return "; ".join(problems[:2]) + more


class SigmaPolicy(PreTrainedPolicy):
    config_class = SigmaConfig
    name = "sigma"

    def __init__(self, config: SigmaConfig, **kwargs) -> None:
        """`kwargs` (dataset_stats, dataset_meta from LeRobot's factory) are not needed.

        The processors normalise.
        """
        super().__init__(config)
        config.validate_features()
        self.config = config
        self.model = SigmaModel(config.model)
        self.lora_config = prepare_finetuning(self.model, config.finetune)
        self.curriculum = Curriculum.from_config(config.loss)
        self.register_buffer("curriculum_step", torch.zeros((), dtype=torch.long))
        self.reset()

    @classmethod
    def from_pretrained(cls, pretrained_name_or_path: str | Path, **kwargs) -> SigmaPolicy:
        """LeRobot's, with one-line errors for a local directory (and the weights checked: `_load_as_safetensor`).

        FileNotFoundError for a file that its saved processors reference and that is missing (LeRobot would take the
        directory for a Hub repo id).
        """
        path = Path(pretrained_name_or_path)
        if path.is_dir():
            check_saved_processors(path)
            weights = path / "model.safetensors"
            if not weights.is_file():
                raise FileNotFoundError(f"{weights} is missing: no weights in the saved policy {path}")
        return super().from_pretrained(pretrained_name_or_path, **kwargs)

    @classmethod
    def _load_as_safetensor(cls, model: SigmaPolicy, model_file: str, map_location: str, strict: bool) -> SigmaPolicy:
        """LeRobot's, always strict, whatever `strict` the caller passes.

        Non-strict, a weight the file lacks would stay at random init with only a log line. ValueError (one line)
        for a file that is no safetensors file, lacks weights of the policy, holds others, or holds them in other
        shapes.
        """
        try:
            return super()._load_as_safetensor(model, model_file, map_location, True)
        except SafetensorError as err:
            raise ValueError(f"{model_file} is not a readable safetensors file ({err})") from None
        except RuntimeError as err:
            problems = load_problems(err)
            if problems is None:
                raise
            raise ValueError(f"{model_file} does not fit its config.json: {problems}") from None

    def get_optim_params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self) -> None:
        """Start of an episode: no tau, no semantic memory, no queued actions (any batch size may follow)."""
        self._tau: Tensor | None = None
        self._memory: Tensor | None = None
        self._queue: deque[Tensor] = deque()

    def update(self) -> None:
        """After each optimiser step (lerobot-train): the curriculum moves one step on."""
        self.curriculum_step += 1

    # ------------------------------------------------------------------ batches
    @staticmethod
    def tasks(batch: dict, batch_size: int) -> list[str]:
        task = batch.get("task")
        if task is None:
            raise ValueError("sigma policy: the batch has no 'task' (the instruction text)")
        tasks = [task] if isinstance(task, str) else list(task)
        if len(tasks) != batch_size or not all(isinstance(t, str) for t in tasks):
            raise ValueError(f"sigma policy: 'task' must hold {batch_size} strings, got {task!r}")
        # blank as the ROS path sees it (sigma_ros.conversions.clean_instruction): no printable text
        if any(not "".join(ch for ch in t if unicodedata.category(ch)[0] != "C").strip() for t in tasks):
            raise ValueError(f"sigma policy: 'task' holds a blank instruction: {task!r}")
        return tasks

    def inputs(self, batch: dict) -> tuple[Tensor, Tensor]:
        """Return the batch's (image, state), checked: a non-empty batch, images uint8 or float in [0, 1].

        float16/float64 images become float32 (as states do); ValueError otherwise.
        """
        image, state = batch[self.config.camera_key], batch[OBS_STATE]
        if state.dim() == 0 or state.shape[0] == 0 or image.dim() == 0 or image.shape[0] == 0:
            raise ValueError(f"sigma policy: empty batch (image {list(image.shape)}, state {list(state.shape)})")
        if image.dtype == torch.uint8:
            return image, state
        if not image.is_floating_point():
            raise ValueError(f"sigma policy: images must be uint8 or float in [0, 1], got {image.dtype}")
        image = image.float()
        low, high = torch.aminmax(image)  # NaN passes here, the model refuses it
        low, high = low.item(), high.item()
        if low < -IMAGE_RANGE_TOLERANCE or high > 1 + IMAGE_RANGE_TOLERANCE:
            raise ValueError(f"sigma policy: float images must be in [0, 1] (LeRobot's convention; or uint8 in "
                             f"0..255), got values in [{low:g}, {high:g}]")
        return image, state

    def check_episode(self, batch_size: int) -> None:
        """Refuse a batch of another size than the episode's plans (tau's) before `reset`."""
        if self._tau is not None and self._tau.shape[0] != batch_size:
            raise ValueError(f"sigma policy: a batch of {batch_size} in an episode of batches of "
                             f"{self._tau.shape[0]}; call reset() at the start of each episode")

    def silence(self, batch_size: int, device: torch.device) -> Tensor | None:
        """Return the audio chunk the model hears: zeros when it uses audio, else None."""
        c = self.model.config
        return torch.zeros(batch_size, c.audio_chunk_samples, device=device) if c.use_audio else None

    def sigma_batch(self, batch: dict) -> dict:
        """Return a LeRobot training batch as sigma-train's window batch.

        vision_inputs / robot_state at the window's first frame, gt_action_vector = its action, gt_action_chunk = the
        first chunk_len actions, gt_action_trajectory = all traj_len of them, text = the task; with the previous frame
        ([B, 2, ...] observations) also prev_vision_inputs / prev_robot_state and has_previous (an episode's first frame
        is its own previous one, as in the shards); audio (and prev_audio) is silence for a model that uses audio.
        """
        c = self.model.config
        (image, state), actions = self.inputs(batch), batch[ACTION]
        if actions.dim() != 3 or actions.shape[1] < c.traj_len:
            raise ValueError(
                f"sigma policy: 'action' must be [B, {c.traj_len}, {c.action_dim}] (action_delta_indices), "
                f"got {list(actions.shape)}"
            )
        out: dict = {}
        if image.dim() == 5:
            if state.dim() != 3:
                raise ValueError(f"sigma policy: images have a time axis but observation.state is {list(state.shape)}")
            out["prev_vision_inputs"], image = image[:, 0], image[:, -1]
            out["prev_robot_state"], state = state[:, 0], state[:, -1]
            pad = batch.get(f"{OBS_STATE}_is_pad")
            out["has_previous"] = ~pad[:, 0] if pad is not None else torch.ones(state.shape[0], dtype=torch.bool)
        if self.model.config.use_audio:
            out["audio"] = self.silence(state.shape[0], state.device)
            if "prev_robot_state" in out:
                out["prev_audio"] = out["audio"]
        out.update(
            vision_inputs=image, robot_state=state, text=self.tasks(batch, state.shape[0]),
            gt_action_vector=actions[:, 0], gt_action_chunk=actions[:, : c.chunk_len],
            gt_action_trajectory=actions[:, : c.traj_len],
        )
        return out

    # ----------------------------------------------------------------- training
    def forward(self, batch: dict, reduction: str = "mean",
                generator: torch.Generator | None = None) -> tuple[Tensor, dict]:
        """(L_total, the per-step metrics sigma-train logs) at the current curriculum step."""
        if reduction != "mean":
            raise ValueError("sigma policy: only reduction='mean' (TRAF's hard subset is a term of the whole batch)")
        step = int(self.curriculum_step)
        result = compute_losses(self.model, self.sigma_batch(batch), self.config.loss, self.curriculum(step), generator)
        return result.loss, {**result.metrics, "curriculum_step": step}

    # ------------------------------------------------------------------- acting
    @torch.no_grad()
    def predict_action_chunk(self, batch: dict, **kwargs) -> Tensor:
        """One plan: the fused targets of its first n_action_steps ticks, [B, n_action_steps, A].

        Carries tau and the semantic memory into the next plan (`reset` clears them).
        """
        self.eval()
        m = self.model
        image, state = self.inputs(batch)
        self.check_episode(state.shape[0])
        obs = observation_from_batch({"vision_inputs": image, "robot_state": state,
                                      "audio": self.silence(state.shape[0], state.device)}, m.config, m.device)
        out = m(obs, m.tokenize(self.tasks(batch, obs.robot_state.shape[0])), tau_prev=self._tau,
                memory_prev=self._memory, telepathy=self.config.loss.telepathy)
        self._tau, self._memory = out.language.tau, out.language.memory
        a = out.action
        steps = [m.action.fuse(a.action_vector, a.action_chunk, a.action_trajectory, k)
                 for k in range(m.config.n_action_steps)]
        return torch.stack(steps, dim=1)

    @torch.no_grad()
    def select_action(self, batch: dict, **kwargs) -> Tensor:
        """Return the next action [B, A]: a new plan every n_action_steps calls."""
        self.check_episode(self.inputs(batch)[1].shape[0])
        if not self._queue:
            self._queue.extend(self.predict_action_chunk(batch).transpose(0, 1))
        return self._queue.popleft()
