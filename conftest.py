# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Fixtures shared by the tests of every package (sigma_model/tests, sigma_sim/tests, sigma_ros/test)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sigma_model import SigmaConfig, SigmaModel, SigmaObservation
from sigma_model.testing import make_observation, save_tiny_llama, small_config

# Tiny test models are dominated by per-op overhead; one thread avoids OpenMP contention on CI's 2 cores.
torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread and restore the count after it (a CLI under test may set its own).

    Tiny models gain nothing from intra-op threads; on a busy 2-core machine OpenMP spinning makes a step ~50x slower.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """Return a tiny Llama with hidden size 24 (not d_model) and a word-level tokenizer, saved locally (no hub)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_hf"))


@pytest.fixture(scope="session")
def smolvla_dir(tmp_path_factory):
    """Return a tiny random SmolVLA in the public checkpoint layout (config.json + model.safetensors), its VLM's config.

    Tokenizer and processor beside it (no hub).
    """
    pytest.importorskip("lerobot.policies.smolvla.modeling_smolvla")
    from sigma_model.testing_vla import save_tiny_smolvla

    return save_tiny_smolvla(tmp_path_factory.mktemp("tiny_smolvla"))


@pytest.fixture
def config() -> SigmaConfig:
    return small_config()


@pytest.fixture
def model(config) -> SigmaModel:
    torch.manual_seed(0)
    return SigmaModel(config).eval()


@pytest.fixture
def obs(config) -> SigmaObservation:
    return make_observation(config)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Two 40-frame simulator episodes (32x32 camera) as a LeRobot v3 dataset, by sigma-sim-record's code."""
    import sigma_sim
    from sigma_sim import _gl

    if sigma_sim.GL_BACKEND is None or not _gl.probe_gl_backend(sigma_sim.GL_BACKEND):
        pytest.skip("recording renders camera images: no working headless GL backend (install libegl1 or libosmesa6)")
    from sigma_sim.record import record_dataset
    from sigma_sim.so101_env import SimConfig

    root = tmp_path_factory.mktemp("sim") / "so101_tiny"
    record_dataset(root, 2, seed=10, repo_id="sigma/so101_tiny", keep_failed=True,
                   sim_config=SimConfig(image_width=32, image_height=32, max_episode_steps=40))
    return root
