# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Episode variations of the closed-loop evaluation (sigma_sim.episode_variations).

Wide cube range, perturbed view, held-out paraphrases: the same seeds under each, and their columns in the report.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import sigma_sim
from sigma_model.evaluation.report import wilson_interval
from sigma_sim.closed_loop import (
    ClosedLoopConfig,
    ExpertPolicy,
    build_closed_loop_report,
    format_summary,
    run_conditions,
)
from sigma_sim.episode_variations import (
    VARIATIONS,
    VIEW_PERTURBATION,
    WIDE_RANGE_SCALE,
    episode_instruction,
    reset_options,
    widened,
)
from sigma_sim.expert import ScriptedExpert, run_expert_episode
from sigma_sim.instructions import HELD_OUT_PARAPHRASES, SELECTION_PARAPHRASES, instruction_target
from sigma_sim.so101_env import SimConfig, SO101PickPlaceEnv

NOMINAL = SimConfig()
needs_gl = pytest.mark.skipif(sigma_sim.GL_BACKEND is None, reason="no headless OpenGL (libegl1 / libosmesa6)")


@pytest.fixture(scope="module")
def physics():
    env = SO101PickPlaceEnv(render_observations=False)
    yield env
    env.close()


def starts(env, seeds, variation):
    return np.array([env.reset(seed=int(s), options=reset_options(variation))[0]["cube_pos"][:2] for s in seeds])


def outside_nominal_box(xy: np.ndarray) -> np.ndarray:
    (x0, x1), (y0, y1) = NOMINAL.cube_x_range, NOMINAL.cube_y_range
    return (xy[:, 0] < x0) | (xy[:, 0] > x1) | (xy[:, 1] < y0) | (xy[:, 1] > y1)


def test_wide_range_puts_cubes_outside_the_nominal_box_and_within_20_percent_of_it(physics):
    seeds = range(10_000, 10_200)
    nominal, wide = starts(physics, seeds, "nominal"), starts(physics, seeds, "wide_range")
    assert not outside_nominal_box(nominal).any()
    (x0, x1), (y0, y1) = widened(NOMINAL.cube_x_range, 1.2), widened(NOMINAL.cube_y_range, 1.2)
    assert (x0, x1, y0, y1) == pytest.approx((0.162, 0.258, -0.06, 0.06))
    eps = 1e-6  # float32 observations
    assert (wide[:, 0] >= x0 - eps).all() and (wide[:, 0] <= x1 + eps).all()
    assert (wide[:, 1] >= y0 - eps).all() and (wide[:, 1] <= y1 + eps).all()
    out = outside_nominal_box(wide)
    assert 0.15 < out.mean() < 0.5  # ~31% expected: each axis leaves its box with probability 1/6
    # the widened box is used to its edges on every side
    assert wide[:, 0].min() < x0 + 0.003 and wide[:, 0].max() > x1 - 0.003
    assert wide[:, 1].min() < y0 + 0.003 and wide[:, 1].max() > y1 - 0.003
    # paired with the nominal episode: the same draw, moved out from the centre
    centre = np.array([sum(NOMINAL.cube_x_range), sum(NOMINAL.cube_y_range)]) / 2
    np.testing.assert_allclose(wide, centre + WIDE_RANGE_SCALE * (nominal - centre), atol=1e-6)


def test_the_expert_solves_wide_range_episodes_outside_the_nominal_box(physics):
    """One seed per corner of the widened box, the farthest outside the nominal box."""
    seeds = np.arange(10_000, 10_200)
    wide = starts(physics, seeds, "wide_range")
    centre = np.array([sum(NOMINAL.cube_x_range), sum(NOMINAL.cube_y_range)]) / 2
    chosen = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            quadrant = (np.sign(wide[:, 0] - centre[0]) == sx) & (np.sign(wide[:, 1] - centre[1]) == sy)
            chosen.append(int(seeds[quadrant][np.argmax(np.abs(wide[quadrant] - centre).sum(axis=1))]))
    assert outside_nominal_box(starts(physics, chosen, "wide_range")).all()
    for i, seed in enumerate(chosen):
        result = run_expert_episode(physics, seed=seed, instruction=episode_instruction(i, seed),
                                    options=reset_options("wide_range"))
        assert result.success, (seed, result)


@pytest.mark.parametrize("options, message", [
    ({"cube_range_scale": 0}, "cube_range_scale"), ({"cube_range_scale": -1.2}, "cube_range_scale"),
    ({"cube_range_scale": float("nan")}, "cube_range_scale"), ({"cube_range_scale": "1.2"}, "cube_range_scale"),
    ({"cube_range_scale": True}, "cube_range_scale"), ({"perturb_view": "yes"}, "perturb_view"),
    ({"perturb_veiw": True}, "unknown reset options"),
])
def test_bad_reset_options_are_one_line_errors(physics, options, message):
    with pytest.raises(ValueError, match=message) as err:
        physics.reset(seed=0, options=options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("field, value", [("cube_x_range", (0.25, 0.17)), ("cube_y_range", (-0.05, math.inf))])
def test_bad_cube_ranges_are_one_line_errors(field, value):
    with pytest.raises(ValueError, match=field) as err:
        SO101PickPlaceEnv(render_observations=False, **{field: value})
    assert "\n" not in str(err.value)


def test_variations_must_include_nominal_and_be_known():
    for bad in (("wide_range",), ("nominal", "sideways"), ("nominal", "nominal")):
        with pytest.raises(ValueError, match="variations must be") as err:
            ClosedLoopConfig(variations=bad)
        assert "\n" not in str(err.value)
    assert ClosedLoopConfig(variations=["nominal", "paraphrase"]).variations == ("nominal", "paraphrase")
    with pytest.raises(ValueError, match="variation must be one of"):
        reset_options("sideways")


def camera_pose(env):
    return env.data.cam_xpos[env.camera_id].copy(), env.data.cam_xmat[env.camera_id].reshape(3, 3).copy()


@needs_gl
def test_perturbed_view_changes_the_image_a_little_per_seed_and_not_the_physics():
    env = SO101PickPlaceEnv(SimConfig(image_width=48, image_height=48))
    try:
        images, poses = {}, {}
        for seed in (10_000, 10_001):
            nominal, _ = env.reset(seed=seed)
            pose = camera_pose(env)
            perturbed, _ = env.reset(seed=seed, options={"perturb_view": True})
            poses[seed] = camera_pose(env)
            again, _ = env.reset(seed=seed, options={"perturb_view": True})
            assert np.array_equal(again["image"], perturbed["image"])  # deterministic per seed
            back, _ = env.reset(seed=seed)
            assert np.array_equal(back["image"], nominal["image"])  # the next nominal episode is nominal again
            assert camera_pose(env)[0] == pytest.approx(pose[0])
            diff = np.abs(perturbed["image"].astype(float) - nominal["image"])
            assert 1.0 < diff.mean() < 25.0, diff.mean()  # a little: a few grey levels on average
            images[seed] = perturbed["image"]
            # the camera moved 1 cm and turned 2 deg; the episode itself (cube, arm) is the nominal one
            assert np.linalg.norm(poses[seed][0] - pose[0]) == pytest.approx(VIEW_PERTURBATION.camera_shift_m)
            cos = (np.trace(poses[seed][1].T @ pose[1]) - 1) / 2
            assert math.degrees(math.acos(min(1.0, cos))) == pytest.approx(VIEW_PERTURBATION.camera_tilt_deg, abs=1e-3)
            for key in ("cube_pos", "cube_quat", "joint_positions"):
                assert np.array_equal(perturbed[key], nominal[key]), key
        assert not np.allclose(poses[10_000][0], poses[10_001][0])  # drawn per seed
        assert not np.array_equal(images[10_000], images[10_001])
    finally:
        env.close()
    physics = SO101PickPlaceEnv(render_observations=False)
    try:  # the same expert run, state for state, under the perturbed view
        runs = []
        for options in ({}, {"perturb_view": True}):
            physics.reset(seed=10_002, options=options)
            expert, states = ScriptedExpert(physics), []
            for _ in range(60):
                physics.step(expert.act())
                states.append(physics.data.qpos.copy())
            runs.append(np.array(states))
        assert np.array_equal(runs[0], runs[1])
    finally:
        physics.close()


@needs_gl
def test_every_variation_runs_the_same_seeds_and_the_report_has_its_column(recording_sim):
    cfg = ClosedLoopConfig(episodes=2, max_steps=300, conditions=("expert",), variations=VARIATIONS)
    env = recording_sim(SO101PickPlaceEnv(SimConfig(image_width=32, image_height=32, max_episode_steps=301)))
    try:
        outcomes = run_conditions(env, {"expert": ExpertPolicy(env.env)}, cfg)
    finally:
        env.env.close()
    assert [(o.variation, o.seed) for o in outcomes] == [(v, s) for v in VARIATIONS for s in (10_000, 10_001)]
    first = {(o.variation, o.seed): obs for o, obs in zip(outcomes, env.first)}
    text = {(o.variation, o.seed): o.instruction for o in outcomes}
    centre = np.array([sum(NOMINAL.cube_x_range), sum(NOMINAL.cube_y_range)]) / 2
    for seed in (10_000, 10_001):
        nominal = first["nominal", seed]
        for v in VARIATIONS:
            assert np.array_equal(first[v, seed]["joint_positions"], nominal["joint_positions"])
        for v in ("perturbed_view", "paraphrase", "paraphrase_selection"):
            assert np.array_equal(first[v, seed]["cube_pos"], nominal["cube_pos"])
        np.testing.assert_allclose(first["wide_range", seed]["cube_pos"][:2],
                                   centre + WIDE_RANGE_SCALE * (nominal["cube_pos"][:2] - centre), atol=1e-6)
        assert not np.array_equal(first["perturbed_view", seed]["image"], nominal["image"])
        assert text["wide_range", seed] == text["perturbed_view", seed] == text["nominal", seed]
        side = instruction_target(text["nominal", seed])
        assert text["paraphrase", seed] in HELD_OUT_PARAPHRASES[side]
        assert text["paraphrase_selection", seed] in SELECTION_PARAPHRASES[side]
    assert all(o.success for o in outcomes)  # the expert solves every variation of these episodes

    outcomes[-1].success = False  # one failed selection-paraphrase episode, for the paired counts
    report, records = build_closed_loop_report(outcomes, cfg)
    assert len(records) == 10 and [r["variation"] for r in records] == [v for v in VARIATIONS for _ in range(2)]
    closed = report["closed_loop"]["expert"]
    assert closed["episodes"] == 2 and closed["successes"] == 2  # the main columns: nominal episodes only
    assert report["conditions"]["expert"]["episodes"] == 2 and report["num_batches"] == 2
    table = closed["episode_success_by_variation"]
    assert list(table) == list(VARIATIONS) == list(report["variations"])
    for v, entry in table.items():
        k = 1 if v == "paraphrase_selection" else 2
        assert (entry["episodes"], entry["successes"], entry["episode_success_rate"]) == (2, k, k / 2)
        assert entry["episode_success_rate_ci95"] == pytest.approx(list(wilson_interval(k, 2)))
        if v != "nominal":
            assert entry["vs_nominal"] == {"paired_episodes": 2, "solved_nominal_only": 2 - k,
                                           "solved_variation_only": 0}
    assert table["paraphrase_selection"]["failed_seeds"] == [10_001]
    assert "0.162" in report["variations"]["wide_range"]
    lines = format_summary(report).splitlines()
    header = lines.index("episode success by variation (same seeds; successes/episodes [95% CI])")
    assert lines[header + 1].split() == ["condition", *VARIATIONS]
    assert lines[header + 2].startswith("scripted expert")
    assert lines[header + 2].split()[-10:] == ["2/2", "[0.34,1.00]", "2/2", "[0.34,1.00]", "2/2", "[0.34,1.00]",
                                               "2/2", "[0.34,1.00]", "1/2", "[0.09,0.91]"]
