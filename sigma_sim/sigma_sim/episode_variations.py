# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Variations of a closed-loop evaluation episode: the generalisation columns of the report.

An episode is pinned by its seed (cube pose, target region, wording); a *variation* changes one thing about
it and nothing else, so every variation of episode ``i`` is paired with its nominal run (same seed, same
region, same initial arm):

    nominal         the template episode
    wide_range      the cube's start box widened by 20% about its centre: the nominal start moved out from
                    the centre by a factor 1.2 (reset option ``cube_range_scale=1.2``)
    perturbed_view  lighting (each light turned ~10 deg about the robot base, diffuse intensity x0.8..1.2,
                    ambient +-0.1) and the front camera (moved 1 cm, turned 2 deg) perturbed, drawn from the
                    episode seed (reset option ``perturb_view=True``); the physics is untouched
    paraphrase      the instruction worded by a held-out paraphrase of the same region
                    (:data:`sigma_sim.instructions.HELD_OUT_PARAPHRASES`, never trained on nor used to choose)
    paraphrase_selection  the same with a selection paraphrase (:data:`sigma_sim.instructions.SELECTION_PARAPHRASES`,
                    never trained on; for choosing checkpoints and settings on selection seeds)

Variations are orthogonal to the evaluation's conditions (which policy acts): ``ClosedLoopConfig.variations``
runs each condition over each variation with the same seeds; the LeRobot env takes one as ``--env.variation``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from sigma_sim.instructions import HELD_OUT_PARAPHRASES, INSTRUCTIONS, SELECTION_PARAPHRASES, episode_wording

VARIATIONS = ("nominal", "wide_range", "perturbed_view", "paraphrase", "paraphrase_selection")
_WORDINGS = {"paraphrase": HELD_OUT_PARAPHRASES, "paraphrase_selection": SELECTION_PARAPHRASES}
#: Factor of the wide_range variation's cube start box (about its centre).
WIDE_RANGE_SCALE = 1.2


@dataclass(frozen=True)
class ViewPerturbation:
    """Magnitudes of the perturbed_view variation (directions and factors are drawn per episode)."""

    camera_shift_m: float = 0.01  # the camera moves this far, in a random direction
    camera_tilt_deg: float = 2.0  # and turns this much about a random axis
    light_tilt_deg: float = 10.0  # each light (position and direction) turns this much about the robot base
    light_scale: float = 0.2  # diffuse intensity of each light and the headlight x U(1 - s, 1 + s)
    ambient_shift: float = 0.1  # the headlight's (the scene's) ambient + U(-a, a)


VIEW_PERTURBATION = ViewPerturbation()


def check_variations(variations) -> tuple[str, ...]:
    """Return the variations as a tuple; ValueError (one line) unless a subset of VARIATIONS with 'nominal'."""
    variations = (variations,) if isinstance(variations, str) else tuple(variations)
    unknown = [v for v in variations if v not in VARIATIONS]
    if unknown or len(set(variations)) != len(variations) or "nominal" not in variations:
        raise ValueError(f"variations must be distinct names from {VARIATIONS} including 'nominal' (the paired "
                         f"reference), got {variations}")
    return variations


def check_variation(variation: str) -> str:
    """Return ``variation``; ValueError (one line) unless it is one of VARIATIONS."""
    if variation not in VARIATIONS:
        raise ValueError(f"variation must be one of {VARIATIONS}, got {variation!r}")
    return variation


def episode_instruction(index: int, seed: int, variation: str = "nominal") -> str:
    """Instruction of evaluation episode ``index`` (regions alternate, wording from the seed).

    A template, or under the ``paraphrase`` (``paraphrase_selection``) variation a held-out (selection) paraphrase of
    the same region.
    """
    return episode_wording(index, seed, _WORDINGS.get(check_variation(variation), INSTRUCTIONS))


def reset_options(variation: str) -> dict[str, Any]:
    """``SO101PickPlaceEnv.reset`` options of a variation."""
    return {"wide_range": {"cube_range_scale": WIDE_RANGE_SCALE},
            "perturbed_view": {"perturb_view": True}}.get(check_variation(variation), {})


def widened(bounds: tuple[float, float], scale: float) -> tuple[float, float]:
    """``bounds`` scaled by ``scale`` about their centre."""
    centre, half = (bounds[0] + bounds[1]) / 2, (bounds[1] - bounds[0]) / 2
    return centre - scale * half, centre + scale * half


def describe_variations(variations, cube_x_range=(0.17, 0.25), cube_y_range=(-0.05, 0.05)) -> dict[str, str]:
    """One line per variation (the report's ``variations``)."""
    (x0, x1), (y0, y1) = widened(cube_x_range, WIDE_RANGE_SCALE), widened(cube_y_range, WIDE_RANGE_SCALE)
    p = VIEW_PERTURBATION
    text = {
        "nominal": "the template episodes",
        "wide_range": f"cube start x in [{x0:.3f}, {x1:.3f}] m, y in [{y0:.3f}, {y1:.3f}] m: the nominal box widened "
                      f"by {WIDE_RANGE_SCALE - 1:.0%} about its centre (each nominal start moved out from the centre "
                      f"by x{WIDE_RANGE_SCALE})",
        "perturbed_view": f"per episode (from its seed): front camera moved {p.camera_shift_m * 100:g} cm and turned "
                          f"{p.camera_tilt_deg:g} deg, each light turned {p.light_tilt_deg:g} deg about the robot "
                          f"base, diffuse x{1 - p.light_scale:g}..{1 + p.light_scale:g}, ambient +-{p.ambient_shift:g}",
        "paraphrase": "the instruction worded by a held-out paraphrase of the same region (never trained on nor used "
                      "to choose)",
        "paraphrase_selection": "the instruction worded by a selection paraphrase of the same region (never trained "
                                "on; chooses checkpoints and settings)",
    }
    return {v: text[v] for v in check_variations(variations)}


def success_entry(outcomes) -> dict[str, Any]:
    """Episodes, successes, success rate and its Wilson 95% CI of some closed-loop episode outcomes."""
    from sigma_model.evaluation.report import wilson_interval

    k, n = sum(o.success for o in outcomes), len(outcomes)
    lo, hi = wilson_interval(k, n)
    return {"episodes": n, "successes": k, "episode_success_rate": k / max(1, n), "episode_success_rate_ci95": [lo, hi]}


def success_by_variation(outcomes) -> dict[str, dict[str, Any]]:
    """Per variation of one condition's episode outcomes: :func:`success_entry`, failed seeds, instructions.

    A variation other than nominal also counts its discordant pairs with the nominal episode of the same seed.
    """
    nominal = {o.seed: o.success for o in outcomes if o.variation == "nominal"}
    table = {}
    for variation in dict.fromkeys(o.variation for o in outcomes):
        outs = [o for o in outcomes if o.variation == variation]
        entry = {**success_entry(outs), "failed_seeds": [o.seed for o in outs if not o.success],
                 "instructions": list(dict.fromkeys(o.instruction for o in outs))}
        if variation != "nominal":
            pairs = [(nominal[o.seed], o.success) for o in outs if o.seed in nominal]
            entry["vs_nominal"] = {"paired_episodes": len(pairs), "solved_nominal_only": sum(a > b for a, b in pairs),
                                   "solved_variation_only": sum(b > a for a, b in pairs)}
        table[variation] = entry
    return table


def format_variation_table(report: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """Lines of the success-by-variation table of a closed-loop report (none when it ran only nominal episodes)."""
    variations = list(report.get("variations") or ())
    if len(variations) < 2:
        return []
    lines = ["episode success by variation (same seeds; successes/episodes [95% CI])",
             f"{'condition':<36}" + "".join(f"{v:>21}" for v in variations)]
    for name, c in report.get("closed_loop", {}).items():
        label = report.get("conditions", {}).get(name, {}).get("label") or labels.get(name, name)
        cells = []
        for v in variations:
            e = c.get("episode_success_by_variation", {}).get(v)
            lo, hi = (None, None) if e is None else e["episode_success_rate_ci95"]
            cells.append("-" if e is None else f"{e['successes']}/{e['episodes']}" + (
                "" if lo is None else f" [{lo:.2f},{hi:.2f}]"))
        lines.append(f"{label:<36}" + "".join(f"{cell:>21}" for cell in cells))
    return lines


def _rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a turn by ``degrees`` about a random axis."""
    axis = rng.normal(size=3)
    quat = np.zeros(4)
    mujoco.mju_axisAngle2Quat(quat, axis / np.linalg.norm(axis), math.radians(degrees))
    return quat


def _rotate(quat: np.ndarray, vec: np.ndarray) -> np.ndarray:
    out = np.zeros(3)
    mujoco.mju_rotVecQuat(out, np.asarray(vec, dtype=np.float64), quat)
    return out


class SceneView:
    """The nominal camera and lighting of a compiled scene, put back (or perturbed) at every reset.

    Only rendering fields of the model change (camera pose, lights, headlight): the physics is untouched.
    """

    _LIGHT_FIELDS = ("light_pos", "light_dir", "light_diffuse")

    def __init__(self, model: mujoco.MjModel, camera_id: int) -> None:
        self.camera_id = camera_id
        self.cam_pos = model.cam_pos[camera_id].copy()
        self.cam_quat = model.cam_quat[camera_id].copy()
        self.lights = {f: getattr(model, f).copy() for f in self._LIGHT_FIELDS}
        self.headlight = (model.vis.headlight.diffuse.copy(), model.vis.headlight.ambient.copy())

    def apply(self, model: mujoco.MjModel, rng: np.random.Generator | None = None,
              perturbation: ViewPerturbation = VIEW_PERTURBATION) -> None:
        """Put the nominal view back; with ``rng``, perturb it (the draws depend only on ``rng``)."""
        c, p = self.camera_id, perturbation
        model.cam_pos[c], model.cam_quat[c] = self.cam_pos, self.cam_quat
        for name, value in self.lights.items():
            getattr(model, name)[:] = value
        model.vis.headlight.diffuse[:], model.vis.headlight.ambient[:] = self.headlight
        if rng is None:
            return
        shift = rng.normal(size=3)
        model.cam_pos[c] = self.cam_pos + p.camera_shift_m * shift / np.linalg.norm(shift)
        turned = np.zeros(4)
        mujoco.mju_mulQuat(turned, _rotation(rng, p.camera_tilt_deg), self.cam_quat)
        model.cam_quat[c] = turned
        for i in range(model.nlight):
            turn = _rotation(rng, p.light_tilt_deg)
            model.light_pos[i] = _rotate(turn, self.lights["light_pos"][i])
            model.light_dir[i] = _rotate(turn, self.lights["light_dir"][i])
            model.light_diffuse[i] = np.clip(self.lights["light_diffuse"][i] * rng.uniform(1 - p.light_scale,
                                                                                           1 + p.light_scale), 0, 1)
        diffuse, ambient = self.headlight
        model.vis.headlight.diffuse[:] = np.clip(diffuse * rng.uniform(1 - p.light_scale, 1 + p.light_scale), 0, 1)
        model.vis.headlight.ambient[:] = np.clip(ambient + rng.uniform(-p.ambient_shift, p.ambient_shift), 0, 1)
