# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Windows, pick_* and action stats (sigma_model.data.windows)."""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
import torch

from sigma_model.data.windows import (
    WindowConfig,
    WindowStats,
    build_windows,
    compute_action_stats,
    hold_state_baseline,
    iter_window_samples,
    num_windows,
    pick_action_from_example,
    pick_rgb_from_example,
    pick_state_from_example,
    pick_text_from_example,
)


def test_build_windows_counts():
    assert build_windows(5, 16) == []
    assert build_windows(16, 16) == [(0, 16)]
    assert build_windows(20, 16) == [(s, s + 16) for s in range(5)]
    assert build_windows(20, 16, stride=2) == [(0, 16), (2, 18), (4, 20)]
    for L in range(0, 40):
        for T in (1, 4, 16):
            for stride in (1, 2, 3, 5):
                assert num_windows(L, T, stride) == len(build_windows(L, T, stride))


def test_compute_action_stats_hand_values():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    avg, mx = compute_action_stats(a)
    assert avg == pytest.approx((5 + 0 + 1 + 2) / 4) and mx == pytest.approx(5.0)
    # delta mode: norms of a[t+1]-a[t] = 5, 1, sqrt(5)
    avg_d, mx_d = compute_action_stats(a, mode="delta")
    assert avg_d == pytest.approx((5 + 1 + math.sqrt(5)) / 3) and mx_d == pytest.approx(5.0)
    assert compute_action_stats(np.zeros((16, 6))) == (0.0, 0.0)
    with pytest.raises(ValueError):
        compute_action_stats(torch.zeros(0, 6))


def test_pick_functions_tolerate_key_names_and_formats():
    hwc = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    chw = torch.from_numpy(hwc).permute(2, 0, 1).contiguous()
    for ex in ({"observation.images.front": chw}, {"observation.image": hwc},
               {"observation.images.side_cam": chw.float() / 255.0}):
        out = pick_rgb_from_example(ex)
        assert out.dtype == torch.uint8 and torch.equal(out, chw)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(hwc).save(buf, format="PNG")
    assert torch.equal(
        pick_rgb_from_example({"observation.images.wrist": {"bytes": buf.getvalue(), "path": "x.png"}}), chw
    )
    assert pick_rgb_from_example({"observation.image": chw}, size=(8, 10)).shape == (3, 8, 10)
    ex = {"observation.state": [1, 2, 3], "action": np.array([0.5, 0.25], np.float64), "task": "pick"}
    assert pick_state_from_example(ex).dtype == torch.float32
    assert torch.equal(pick_state_from_example(ex), torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(pick_action_from_example(ex), torch.tensor([0.5, 0.25]))
    assert pick_text_from_example(ex) == "pick"
    assert pick_text_from_example({"language_instruction": ["stack"]}) == "stack"
    assert pick_text_from_example({}, default="none") == "none"
    assert torch.equal(pick_state_from_example({"observation.joint_state": torch.ones(2)}), torch.ones(2))
    with pytest.raises(KeyError):
        pick_action_from_example({"observation.state": [1.0]})


def _frames(episodes, shuffle_within=False, seed=0):
    """Synthetic LeRobot-like frames: episodes = [(static, moving)], action norm 1 when moving."""
    rng = random.Random(seed)
    out = []
    for ep, (s, m) in enumerate(episodes):
        fr = []
        for i in range(s + m):
            a = torch.zeros(3)
            if i >= s:
                a[0] = math.cos(i)
                a[1] = math.sin(i)
            img = torch.zeros(3, 4, 4, dtype=torch.uint8)
            img[0, 0, 0] = i
            img[1, 0, 0] = ep
            fr.append({"episode_index": torch.tensor(ep), "frame_index": torch.tensor(i),
                       "observation.images.front": img, "observation.state": torch.full((3,), float(i)),
                       "action": a, "task": f"task {ep}"})
        if shuffle_within:
            rng.shuffle(fr)
        out.extend(fr)
    return out


def test_iter_window_samples_counts_shapes_and_content():
    episodes = [(6, 10), (0, 3), (12, 0), (5, 9)]
    cfg = WindowConfig(horizon_T=4, stride=1, chunk_len=2, min_action_norm=0.4, image_size=None)
    stats = WindowStats()
    samples = list(iter_window_samples(_frames(episodes, shuffle_within=True), cfg, stats=stats))
    # ep0: s>=4 -> 9 kept of 13; ep1 too short; ep2: 9 dropped; ep3: s>=3 -> 8 kept of 11
    assert stats.windows_total == 33 and stats.windows_kept == 17 and stats.windows_dropped_static == 16
    assert stats.episodes_too_short == 1 and stats.episodes_seen == 4 and stats.episodes_with_kept_windows == 2
    assert len(samples) == 17
    assert [(int(s["episode_index"]), int(s["frame_index"])) for s in samples] == \
        [(0, s) for s in range(4, 13)] + [(3, s) for s in range(3, 11)]
    s0 = samples[0]
    assert s0["vision_inputs"].shape == (3, 4, 4) and s0["vision_inputs"].dtype == torch.uint8
    assert int(s0["vision_inputs"][0, 0, 0]) == 4  # image of the window's first frame
    assert torch.equal(s0["robot_state"], torch.full((3,), 4.0))
    assert s0["gt_action_trajectory"].shape == (4, 3) and s0["gt_action_chunk"].shape == (2, 3)
    assert torch.equal(s0["gt_action_chunk"], s0["gt_action_trajectory"][:2])
    assert torch.equal(s0["gt_action_vector"], s0["gt_action_trajectory"][0])
    assert s0["text"] == "task 0" and int(s0["window_index"]) == 0
    # frames 4,5 static, 6,7 moving -> avg 0.5, max 1
    assert float(s0["avg_action_l2"]) == pytest.approx(0.5, abs=1e-6)
    assert float(s0["max_action_l2"]) == pytest.approx(1.0, abs=1e-6)
    assert all(float(s["avg_action_l2"]) >= 0.4 for s in samples)


def test_stride_skip_resize_and_baseline():
    episodes = [(0, 20)]
    cfg = WindowConfig(horizon_T=4, stride=3, min_action_norm=0.0, image_size=(8, 6))
    full = list(iter_window_samples(_frames(episodes), cfg, baseline_policy=hold_state_baseline))
    assert [int(s["frame_index"]) for s in full] == [0, 3, 6, 9, 12, 15]
    assert full[0]["vision_inputs"].shape == (3, 8, 6)
    assert torch.equal(full[1]["base_action_chunk"], torch.full((4, 3), 3.0))
    assert full[1]["base_action_vector"].shape == (3,) and full[1]["base_action_trajectory"].shape == (4, 3)
    stats = WindowStats()
    rest = list(iter_window_samples(_frames(episodes), cfg, stats=stats, skip=4))
    assert [int(s["window_index"]) for s in rest] == [4, 5] and stats.windows_kept == 6


def test_non_contiguous_episodes():
    fr = _frames([(0, 5), (0, 5)])
    fr = fr[:2] + fr[5:] + fr[2:5]  # episode 0 split around episode 1
    cfg = WindowConfig(horizon_T=2, min_action_norm=0.0, image_size=None)
    with pytest.raises(ValueError, match="contiguous"):
        list(iter_window_samples(fr, cfg))
    assert len(list(iter_window_samples(fr, cfg, buffer_all=True))) == 8


def test_config_validation():
    with pytest.raises(ValueError):
        WindowConfig(horizon_T=0)
    with pytest.raises(ValueError):
        WindowConfig(horizon_T=4, chunk_len=5)
    with pytest.raises(ValueError):
        WindowConfig(action_norm_mode="bogus")
    assert WindowConfig().effective_chunk_len == 16
