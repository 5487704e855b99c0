# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The whole Sigma step replayed from a CUDA graph.

At batch 1 a step is about a thousand small kernels, and on a GPU launching them takes far longer than running
them (README, speed section: 28.6 ms per step on an H200). A CUDA graph records the launches once and replays them
in one call. :class:`GraphedStep` is ``SigmaModel.forward`` for a robot loop: it checks the inputs' values on the
host, copies them into the graph's input buffers, replays, and returns a copy of the outputs (equal to ``forward``'s
up to float rounding).

One graph per input signature (shapes and dtypes of the inputs, instruction length, telepathy, the model's config),
captured after warm-up runs at its first call, which runs ``forward`` with every stage check and returns its result.
The instruction's embedding is made outside the graph, once per instruction: a text encoder's cache reads the token
ids on the host. What a capture needs of the step (no value read on the host, no copy from it) is tested on the CPU on
fake CUDA tensors (``tests/test_cuda_graph.py``); on a device without graphs (the CPU) the same buffers run eagerly.
"""

from __future__ import annotations

import dataclasses

import torch

from .modeling_sigma import SigmaModel, check_tensor
from .outputs import SigmaObservation, SigmaOutput, TextTokens

#: observation fields a step reads (optional ones may be None)
OBSERVATION_FIELDS = ("image", "robot_state", "audio", "depth", "env_state")
#: distinct instructions whose embeddings are kept; the cache starts over beyond that
EMBEDDING_CACHE = 64


def buffered_step(model: SigmaModel, buffers: dict[str, torch.Tensor], telepathy: bool) -> SigmaOutput:
    """``model.forward`` on the named input buffers without value checks: what a CUDA graph captures."""
    text = TextTokens(buffers["text_ids"], buffers["text_mask"], None, buffers["text_embeds"])
    obs = SigmaObservation(**{name: buffers.get(name) for name in OBSERVATION_FIELDS})
    return model(obs, text, buffers["tau_prev"], buffers["memory_prev"], telepathy, check_values=False)


def copy_outputs(out):
    """Return a copy of a (nested) output dataclass with its tensors cloned (a replay overwrites a graph's outputs)."""
    if isinstance(out, torch.Tensor):
        return out.clone()
    if dataclasses.is_dataclass(out):
        return type(out)(**{f.name: copy_outputs(getattr(out, f.name)) for f in dataclasses.fields(out)})
    return out


class GraphedStep:
    """Call as ``SigmaModel.forward(obs, text, tau_prev, memory_prev, telepathy)``; no generator, no gradients."""

    def __init__(self, model: SigmaModel, warmup_runs: int = 3) -> None:
        if model.config.vla_backbone:
            raise ValueError("a VLA backbone's step builds its prompt on the host: it cannot be graphed")
        if model.training:
            raise ValueError("GraphedStep needs the model in eval mode (model.eval()): a graph replays no dropout")
        for workspace in ("vision", "language", "action"):
            model._need(workspace)
        self.model = model
        self.warmup_runs = int(warmup_runs)
        self.use_graphs = model.device.type == "cuda"
        self._graphs: dict[tuple, tuple] = {}  # signature -> (input buffers, CUDA graph (None on the CPU), outputs)
        self._embeds: dict[tuple, torch.Tensor] = {}

    def embed(self, text: TextTokens) -> torch.Tensor:
        """Return the language workspace's embedding of `text`, kept per instruction (``text.texts``) when named."""
        key = (tuple(text.texts), tuple(text.ids.shape)) if text.texts is not None else None
        if key is not None and key in self._embeds:
            return self._embeds[key]
        with torch.no_grad():
            embeds = self.model.language.embed_text(text)
        if key is not None:
            if len(self._embeds) >= EMBEDDING_CACHE:
                self._embeds.clear()
            self._embeds[key] = embeds
        return embeds

    def _inputs(self, obs: SigmaObservation, text: TextTokens, tau_prev, memory_prev) -> dict[str, torch.Tensor]:
        c, b = self.model.config, text.ids.shape[0]
        inputs = {name: getattr(obs, name) for name in OBSERVATION_FIELDS if getattr(obs, name) is not None}
        zeros = torch.zeros(b, c.d_tau, device=self.model.device) if tau_prev is None else tau_prev
        inputs.update(text_ids=text.ids, text_mask=text.mask, text_embeds=self.embed(text), tau_prev=zeros,
                      memory_prev=torch.zeros(b, c.d_model, device=self.model.device) if memory_prev is None
                      else memory_prev)
        return inputs

    def __call__(self, obs: SigmaObservation, text: TextTokens, tau_prev: torch.Tensor | None = None,
                 memory_prev: torch.Tensor | None = None, telepathy: bool = True) -> SigmaOutput:
        with torch.no_grad():
            inputs = self._inputs(obs, text, tau_prev, memory_prev)
            # a graph keeps the settings it was recorded with (e.g. diffusion_steps): a changed config is a new key
            key = (bool(telepathy), repr(self.model.config)) + tuple((n, tuple(t.shape), t.dtype)
                                                                     for n, t in sorted(inputs.items()))
            if key not in self._graphs:
                # the first call of a signature runs forward with every stage check, then records the graph
                out = self.model(obs, TextTokens(text.ids, text.mask, text.texts, inputs["text_embeds"]),
                                 inputs["tau_prev"], inputs["memory_prev"], telepathy)
                self._graphs[key] = self._record(inputs, bool(telepathy))
                return out
            buffers, graph, static_out = self._graphs[key]
            for name, x in inputs.items():
                check_tensor(name, x, tuple(buffers[name].shape))  # the values: shapes are the signature's
                buffers[name].copy_(x)
            if graph is None:
                return buffered_step(self.model, buffers, telepathy)
            graph.replay()
            return copy_outputs(static_out)

    def _record(self, inputs: dict[str, torch.Tensor], telepathy: bool):
        """Input buffers and, on CUDA, the graph of :func:`buffered_step` on them and its outputs."""
        device = self.model.device
        buffers = {name: x.to(device, copy=True) for name, x in inputs.items()}
        if not self.use_graphs:
            return buffers, None, None
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the default stream, as torch.cuda.graphs advises
            for _ in range(self.warmup_runs):
                buffered_step(self.model, buffers, telepathy)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = buffered_step(self.model, buffers, telepathy)
        return buffers, graph, static_out
