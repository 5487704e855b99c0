# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""GraphedStep: the step a CUDA graph captures reads no value on the host, and replays equal forward.

No GPU here: the capture's needs are checked on fake CUDA tensors (a value read raises, a host-to-device copy is
recorded), and GraphedStep's buffers, signatures and checks on the CPU, where it runs them eagerly.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch._subclasses.fake_tensor import FakeTensorMode

from sigma_model import SigmaModel
from sigma_model.cuda_graph import GraphedStep, buffered_step
from sigma_model.outputs import SigmaObservation
from sigma_model.testing import make_observation, randomize_, save_tiny_bert, small_config

LEFT, RIGHT = "pick the cube and place it on the left", "pick the cube and place it on the right"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    bert = save_tiny_bert(tmp_path_factory.mktemp("bert"))
    model = SigmaModel(small_config(text_encoder=str(bert), diffusion_noise_scale=0.0))  # as shipped: the noise mean
    randomize_(model, seed=3)
    return model.eval()


class HostCopies(TorchDispatchMode):
    """Records every op that takes a CPU tensor (not a 0-dim scalar) and gives a CUDA one: a copy from the host."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = lambda tree: [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]  # noqa: E731
        if (any(t.device.type == "cpu" and t.dim() > 0 for t in tensors((args, kwargs)))
                and any(t.device.type == "cuda" for t in tensors(out))):
            self.copies.append(str(func))
        return out


@pytest.mark.parametrize("telepathy", [True, False])
def test_the_captured_step_reads_no_value_and_copies_nothing_from_the_host(model, telepathy):
    """A CUDA graph can capture neither: a value read (bool(mask.all()), .item()) or a copy (torch.tensor(list))."""
    c = model.config
    text = model.tokenize([LEFT])
    shapes = {"image": ((1, 3, c.image_size, c.image_size), torch.uint8), "robot_state": ((1, c.state_dim), None),
              "audio": ((1, c.audio_chunk_samples), None), "text_ids": (tuple(text.ids.shape), torch.long),
              "text_mask": (tuple(text.mask.shape), torch.bool), "tau_prev": ((1, c.d_tau), None),
              "text_embeds": ((*text.ids.shape, model.language.backbone.hidden_size), None),
              "memory_prev": ((1, c.d_model), None)}
    fake_model = SigmaModel(dataclasses.replace(c, text_encoder=None))  # the embeddings are an input
    with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
        fake_model = fake_model.eval().to("cuda")
        buffers = {name: torch.zeros(shape, dtype=dtype, device="cuda") for name, (shape, dtype) in shapes.items()}
        with HostCopies() as host:
            out = buffered_step(fake_model, buffers, telepathy)  # a value read raises DataDependentOutputException
    assert out.motor_commands.device.type == "cuda" and out.action.action_trajectory.shape == (1, c.traj_len, 6)
    assert host.copies == []


def _forward(model, obs, texts, tau, memory, telepathy=True):
    with torch.no_grad():
        return model(obs, model.tokenize(texts), tau, memory, telepathy)


def test_graphed_step_runs_forward_on_its_buffers(model):
    step = GraphedStep(model)
    assert not step.use_graphs  # the CPU: the buffers run eagerly
    tau = memory = None
    for i, texts in enumerate([[LEFT], [RIGHT], [RIGHT], [LEFT]]):
        obs = make_observation(model.config, batch=1, seed=i)
        out = step(obs, model.tokenize(texts), tau, memory)
        ref = _forward(model, obs, texts, tau, memory)
        for name in ("motor_commands", "action.action_trajectory", "language.tau", "language.memory",
                     "vision.vision_tokens"):
            got, want = out, ref
            for part in name.split("."):
                got, want = getattr(got, part), getattr(want, part)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=f"step {i}: {name}")
        tau, memory = out.language.tau, out.language.memory
    assert len(step._graphs) == 1  # left and right: one length, one signature, two embeddings
    obs = make_observation(model.config, batch=1, seed=9)
    for texts, telepathy in (([LEFT], False), (["place it left"], True), ([LEFT], False)):
        out = step(obs, model.tokenize(texts), tau, memory, telepathy)
        ref = _forward(model, obs, texts, tau, memory, telepathy)
        torch.testing.assert_close(out.motor_commands, ref.motor_commands, rtol=0, atol=1e-6)
    assert len(step._graphs) == 3


def test_graphed_step_checks_what_it_replays(model):
    step = GraphedStep(model)
    obs = make_observation(model.config, batch=1)
    step(obs, model.tokenize([LEFT]))
    bad = SigmaObservation(image=obs.image, robot_state=torch.full_like(obs.robot_state, float("nan")), audio=obs.audio)
    with pytest.raises(ValueError, match="robot_state contains NaN"):
        step(bad, model.tokenize([LEFT]))
    wrong = SigmaObservation(image=obs.image[:, :, :-1], robot_state=obs.robot_state, audio=obs.audio)
    with pytest.raises(ValueError, match="image must have shape"):  # a new signature: forward's own checks
        step(wrong, model.tokenize([LEFT]))
    with pytest.raises(ValueError, match="eval mode"):
        GraphedStep(model.train())
    model.eval()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_checks.sh runs it)")
def test_graphed_step_replays_a_cuda_graph_equal_to_forward(model):
    gpu = SigmaModel(model.config).eval()
    gpu.load_state_dict(model.state_dict())
    gpu = gpu.to("cuda")
    step = GraphedStep(gpu)
    assert step.use_graphs
    tau = memory = None
    for i, texts in enumerate([[LEFT], [LEFT], [RIGHT], [LEFT]]):
        cpu_obs = make_observation(model.config, batch=1, seed=i)
        obs = SigmaObservation(**{k: getattr(cpu_obs, k).to("cuda") for k in ("image", "robot_state", "audio")})
        out = step(obs, gpu.tokenize(texts), tau, memory)
        ref = _forward(gpu, obs, texts, tau, memory)
        torch.testing.assert_close(out.motor_commands, ref.motor_commands, rtol=0, atol=1e-4, msg=f"step {i}")
        torch.testing.assert_close(out.language.memory, ref.language.memory, rtol=0, atol=1e-4, msg=f"step {i}")
        tau, memory = out.language.tau, out.language.memory
    assert step._graphs[next(iter(step._graphs))][1] is not None  # replayed from a graph
