# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Scoring a bag replay.

per-batch records of both paths against the recorded commands, the graph's latencies, drops and recurrence mismatches,
and its consistency with the offline path.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from sigma_ros.bag_pairing import PairedFrame


from sigma_ros.bag_replay_config import CONDITION_OFFLINE, CONDITION_ROS, BagEvalConfig
from sigma_ros.bag_replay_graph import GraphRun
from sigma_ros.bag_replay_offline import FrameOutput, Step

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- scoring
def _status_latency(statuses: Sequence[tuple[float, Any]], t_start: float, t_end: float) -> dict[str, float]:
    """Per-stage latency (ms) of a time window.

    The mean over the nodes' Status messages received in it of each stage's window mean (the first Status after it when
    none arrived inside).
    """
    inside = [m for t, m in statuses if t_start <= t <= t_end + 0.3]
    if not inside:
        seen = set()
        for t, m in statuses:
            if t > t_end and m.node not in seen:
                inside.append(m)
                seen.add(m.node)
    values: dict[str, list[float]] = {}
    for m in inside:
        for name, v in zip(m.stage_names, m.stage_latency_mean_ms):
            values.setdefault(name, []).append(float(v))
    return {f"latency_{k}_ms": float(np.mean(v)) for k, v in values.items() if v}


def _first_commands(run: GraphRun) -> dict[int, np.ndarray]:
    """For each frame with a plan: the first motor command received after its plan (and before the next plan)."""
    order = sorted(run.plan_times.items(), key=lambda kv: kv[1])
    times = [t for t, _ in run.motor_commands]
    out = {}
    import bisect

    for k, (idx, t_plan) in enumerate(order):
        t_next = order[k + 1][1] if k + 1 < len(order) else float("inf")
        i = bisect.bisect_right(times, t_plan)
        if i < len(times) and times[i] < t_next:
            out[idx] = run.motor_commands[i][1]
    return out


def batches_of(steps: Sequence[Step], batch_size: int) -> list[list[int]]:
    """Scored frames (a plan is expected and the recorded window is complete), batch by batch."""
    scored = [s.index for s in steps if s.plan and s.target is not None]
    return [scored[i:i + batch_size] for i in range(0, len(scored), batch_size)]


def _input_mismatches(step: Step, frames: Sequence[PairedFrame], graph: GraphRun) -> list[str]:
    """Return the inputs the graph stepped a planned frame with that differ from the offline path's.

    ``recurrence`` (the frame whose tau is tau_prev), ``state`` (the joint state), ``memory`` (the instruction and the
    plans since the memory reset, as the language node reports them). Inputs the recorder missed count as matching.
    """
    i = step.index
    kinds = []
    if graph.used_tau.get(i, step.tau_from) != step.tau_from:
        kinds.append("recurrence")
    st = graph.used_state.get(i)
    if st is not None and not np.allclose(st, frames[i].state.astype(np.float32), atol=1e-6):
        kinds.append("state")
    memory = (frames[i].instruction, step.memory_step)
    if graph.used_memory.get(i, memory) != memory:
        kinds.append("memory")
    return kinds


def _frames_in_step(steps: Sequence[Step], frames: Sequence[PairedFrame], offline: dict[int, FrameOutput] | None,
                    graph: GraphRun | None) -> set[int]:
    """Frames whose graph plan must equal the offline one.

    Planned on both paths, with the offline path's inputs (:func:`_input_mismatches`), no earlier frame of their memory
    segment dropped or mismatched, and their tau source in step too: after a drop the recurrence legitimately differs,
    m_t within a segment and tau across the segments' boundary (a new instruction resets m_t, not tau_prev), and a
    frame the language node stepped with the instruction before (or after) a change carries a different m_t.
    """
    if graph is None or offline is None:
        return set()
    in_step: set[int] = set()
    broken = False
    for s in steps:
        if s.reset_memory:
            broken = False
        if not s.plan:
            continue
        i = s.index
        ok = (i in graph.outputs and i in offline and not _input_mismatches(s, frames, graph)
              and (s.tau_from is None or s.tau_from in in_step))
        broken = broken or not ok
        if not broken:
            in_step.add(i)
    return in_step


def build_records(batches: Sequence[Sequence[int]], steps: Sequence[Step], frames: Sequence[PairedFrame],
                  offline: dict[int, FrameOutput] | None, graph: GraphRun | None, model, cfg: BagEvalConfig
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-batch records of both conditions (report.py format) and the consistency figures."""
    from sigma_model.evaluation.replay import batch_record, text_embedding

    emb_cache: dict[str, torch.Tensor] = {}

    def sem_align(out: FrameOutput, text: str) -> float | None:
        if out.z_sem_pool is None:
            return None
        if text not in emb_cache:
            with torch.no_grad():
                tok = model.tokenize([text])
                emb_cache[text] = text_embedding(model, tok).float().cpu()
        return float(torch.nn.functional.cosine_similarity(out.z_sem_pool.reshape(1, -1), emb_cache[text], dim=-1))

    first_cmd = _first_commands(graph) if graph is not None else {}
    in_step = _frames_in_step(steps, frames, offline, graph)
    records_ros: list[dict[str, Any]] = []
    records_off: list[dict[str, Any]] = []
    max_diff = 0.0
    compared = 0
    mismatches = {"recurrence": 0, "state": 0, "memory": 0}
    for b, idxs in enumerate(batches):
        targets_all = {i: steps[i].target for i in idxs}

        def record(condition: str, outs: dict[int, FrameOutput], present: list[int]) -> dict[str, Any]:
            if not present:
                return {"condition": condition, "batch": b, "num_samples": 0}
            acts = [torch.cat([outs[i].actions[k].reshape(1, *outs[i].actions[k].shape[1:]) for i in present])
                    for k in range(3)]
            tg = [torch.from_numpy(np.stack([targets_all[i][k] for i in present])) for k in range(3)]
            tau = torch.tensor([outs[i].tau_l2 for i in present], dtype=torch.float32)
            aligns = [sem_align(outs[i], frames[i].instruction) for i in present]
            sem = None if any(a is None for a in aligns) else torch.tensor(aligns)
            rec = batch_record(condition, b, acts, tg, None if torch.isnan(tau).any() else tau, sem,
                               cfg.hard_thresholds, cfg.success_thresholds)
            scales = [outs[i].adapter_scale for i in present if outs[i].adapter_scale is not None]
            if scales:
                rec["adapter_scale"] = float(np.mean(scales))
                rec["adapter_fallback_fraction"] = float(np.mean([bool(outs[i].adapter_fallback) for i in present]))
            return rec

        if graph is not None:
            present = [i for i in idxs if i in graph.outputs]
            rec = record(CONDITION_ROS, graph.outputs, present)
            rec["dropped_frames"] = len(idxs) - len(present)
            lat = [graph.outputs[i].latency_ms for i in present if graph.outputs[i].latency_ms is not None]
            if lat:
                rec["latency_e2e_ms"] = float(np.mean(lat))
            pubs = [graph.published[i] for i in idxs if i in graph.published]
            ends = [graph.plan_times[i] for i in present] + pubs
            if pubs:
                rec.update(_status_latency(graph.statuses, min(pubs), max(ends)))
            cmd_err = [float(np.mean((first_cmd[i] - targets_all[i][0]) ** 2)) for i in present
                       if i in first_cmd and first_cmd[i].shape == targets_all[i][0].shape]
            if cmd_err:
                rec["motor_cmd_mse"] = float(np.mean(cmd_err))
            rec["recurrence_mismatches"] = 0
            if offline is not None:
                diffs = []
                for i in present:
                    if i in in_step:
                        d = max(
                            float((a - o).abs().max()) for a, o in zip(graph.outputs[i].actions, offline[i].actions)
                        )
                        diffs.append(d)
                if diffs:
                    rec["max_abs_diff_vs_offline"] = max(diffs)
                    max_diff = max(max_diff, max(diffs))
                    compared += len(diffs)
            for i in present:
                for kind in _input_mismatches(steps[i], frames, graph):
                    mismatches[kind] += 1
                    rec["recurrence_mismatches"] += kind == "recurrence"
            records_ros.append(rec)
        if offline is not None:
            present = [i for i in idxs if i in offline]
            rec = record(CONDITION_OFFLINE, offline, present)
            lat = [offline[i].latency_ms for i in present if offline[i].latency_ms is not None]
            if lat:
                rec["latency_offline_ms"] = float(np.mean(lat))
            records_off.append(rec)
    both = sum(1 for s in steps if graph is not None and offline is not None and s.index in graph.outputs
               and s.index in offline)
    consistency = {"ros_graph_vs_offline_max_abs_diff": max_diff if compared else None,
                   "frames_compared": compared, "frames_diverged": both - len(in_step),
                   "recurrence_mismatches": mismatches["recurrence"], "state_mismatches": mismatches["state"],
                   "memory_mismatches": mismatches["memory"]}
    return records_ros + records_off, consistency


def graph_summary(graph: GraphRun, steps: Sequence[Step]) -> dict[str, Any]:
    """Totals of the ROS run: frames, plans, drops (the nodes' own counters too), latency, rates."""
    expected = [s.index for s in steps if s.plan and s.index in graph.published]
    got = [i for i in expected if i in graph.outputs]
    node_drops = {}
    node_latency = {}
    for node, st in graph.final_status.items():
        if st is None:
            node_drops[node] = None
            continue
        node_drops[node] = {n: int(c) for n, c in zip(st.drop_names, st.drop_counts)}
        for name, mean, mx in zip(st.stage_names, st.stage_latency_mean_ms, st.stage_latency_max_ms):
            node_latency[name] = {"node": node, "window_mean_ms": float(mean), "window_max_ms": float(mx)}
    stage_samples: dict[str, list[float]] = {}
    for _, m in graph.statuses:
        for name, last in zip(m.stage_names, m.stage_latency_ms):
            stage_samples.setdefault(name, []).append(float(last))
    e2e = [graph.outputs[i].latency_ms for i in got if graph.outputs[i].latency_ms is not None]
    first = min(graph.published.values()) if graph.published else None
    last = max(graph.plan_times.values()) if graph.plan_times else None
    span = (last - first) if (first is not None and last is not None and last > first) else None
    return {
        "mode": graph.mode,
        "frames_published": graph.frames_published,
        "joint_states_published": graph.joint_states_published,
        "instructions_published": graph.instructions_published,
        "plans_expected": len(expected),
        "plans_received": len(got),
        "dropped_frames": len(expected) - len(got),
        "node_dropped_inputs": node_drops,
        "motor_commands": len(graph.motor_commands),
        "latency_e2e_ms": {"mean": float(np.mean(e2e)), "median": float(np.median(e2e)),
                           "p90": float(np.percentile(e2e, 90)), "max": float(np.max(e2e))} if e2e else None,
        "stage_latency_ms": {k: {"mean_of_last": float(np.mean(v)), "max_of_last": float(np.max(v))}
                             for k, v in stage_samples.items()},
        "stage_latency_final_status": node_latency,
        "seconds": graph.seconds,
        "samples_per_s": (len(got) / span) if span else None,
    }
