"""Risk-gated inference adapter (paper section 4.3). Pure torch, no ROS.

The adapter hooks onto the model's outputs after inference; it never changes weights. For each
batch item it reads the predicted actions a (vector, chunk, trajectory), a baseline a_base (the
offline base policy's actions when a dataset provides them, else the model's own tau = 0 path),
the telepathy factors tau and the action condition in tau space c (``ActionOutput.condition_tau``):

    residual      da     = a - a_base                                      (per branch)
    ratio         r      = max over branches ||da_b|| / max(||a_base_b||, norm_floor)
    residual risk R_res  = w_residual * max(0, r - residual_ratio_free)
    tau risk      R_tau  = w_tau * (max(0, lo - ||tau||) / lo + max(0, ||tau|| - hi) / hi)
                           (lo, hi = tau_l2_range; a zero bound contributes nothing)
    align risk    R_cos  = w_align * (1 - cos(tau, c))
    risk          R      = R_res + R_tau + R_cos
    scale         s      = clamp(min_scale + (max_scale - min_scale) * exp(-k * R), min_scale, max_scale)
    adapted       a'     = a_base + s * da

Fallback: an item whose inputs are not finite, whose residual ratio exceeds ``max_residual_ratio``
or whose risk exceeds ``max_risk`` (or is NaN/Inf) gets s = 0, i.e. exactly the baseline action
(``fallback`` marks it). Every other item has s in [min_scale, max_scale].

The same object serves offline replay (`sigma_model.evaluation.replay`) and the ROS action node.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config_io import DictConfig

BRANCHES = ("vector", "chunk", "trajectory")


@dataclass
class AdapterConfig(DictConfig):
    """Parameters of the risk gate; validated on construction."""

    min_scale: float = 0.0  # scale at very high (but not abnormal) risk
    max_scale: float = 1.0  # scale at zero risk (> 1 amplifies the telepathy residual)
    k: float = 1.0  # exponential sharpness: s = min + (max - min) * exp(-k * risk)
    w_residual: float = 1.0  # weight of the residual-to-baseline norm ratio
    w_tau: float = 1.0  # weight of the tau L2 out-of-range term
    w_align: float = 1.0  # weight of 1 - cos(tau, c_act)
    residual_ratio_free: float = 0.0  # ratios up to this value carry no risk ("moderate" residual)
    tau_l2_range: tuple[float, float] = (1.0, 100.0)  # target range of ||tau||_2 (lo = training tau_0)
    max_residual_ratio: float = 10.0  # abnormal residual -> baseline fallback
    max_risk: float = 20.0  # abnormal risk -> baseline fallback
    norm_floor: float = 1e-3  # lower bound of the baseline norm in the ratio

    def __post_init__(self) -> None:
        for name in ("min_scale", "max_scale", "k", "w_residual", "w_tau", "w_align", "residual_ratio_free",
                     "max_residual_ratio", "max_risk", "norm_floor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"AdapterConfig.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"AdapterConfig.{name} must be >= 0, got {value}")
            setattr(self, name, float(value))
        if self.min_scale > self.max_scale:
            raise ValueError(f"AdapterConfig.min_scale ({self.min_scale}) must be <= max_scale ({self.max_scale})")
        if self.norm_floor <= 0:
            raise ValueError("AdapterConfig.norm_floor must be > 0")
        if self.max_residual_ratio <= 0 or self.max_risk <= 0:
            raise ValueError("AdapterConfig.max_residual_ratio and max_risk must be > 0")
        rng = tuple(float(v) for v in self.tau_l2_range)
        if len(rng) != 2 or not all(math.isfinite(v) and v >= 0 for v in rng) or rng[0] > rng[1] or rng[1] <= 0:
            raise ValueError(f"AdapterConfig.tau_l2_range must be (lo, hi) with 0 <= lo <= hi, hi > 0; got {self.tau_l2_range}")
        self.tau_l2_range = rng


@dataclass
class AdapterOutput:
    """Adapted actions and the gate's per-item diagnostics (all [B] unless noted)."""

    action_vector: torch.Tensor  # [B,A]
    action_chunk: torch.Tensor  # [B,T_c,A]
    action_trajectory: torch.Tensor  # [B,T_t,A]
    scale: torch.Tensor  # applied scale (0 where fallback)
    risk: torch.Tensor  # total risk (inf where inputs were not finite)
    risk_residual: torch.Tensor
    risk_tau: torch.Tensor
    risk_align: torch.Tensor
    residual_ratio: torch.Tensor  # max over branches of ||da|| / ||a_base||
    tau_l2: torch.Tensor
    tau_cos: torch.Tensor  # cos(tau, c_act in tau space)
    fallback: torch.Tensor  # bool: item reverted to the baseline

    def terms(self) -> dict[str, torch.Tensor]:
        """The per-item diagnostics (everything except the actions)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("action_")}


def _flat_norm(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).norm(dim=-1)


def _finite_rows(x: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=-1)


class RiskGatedAdapter:
    """s = min + (max - min) exp(-k risk); a' = a_base + s (a - a_base); baseline on abnormal risk."""

    def __init__(self, config: AdapterConfig | None = None) -> None:
        self.config = config or AdapterConfig()

    def __repr__(self) -> str:
        return f"RiskGatedAdapter({self.config})"

    def scale_from_risk(self, risk: torch.Tensor) -> torch.Tensor:
        """The exponential map, clamped to [min_scale, max_scale] (no fallback handling)."""
        c = self.config
        s = c.min_scale + (c.max_scale - c.min_scale) * torch.exp(-c.k * risk)
        return s.clamp(c.min_scale, c.max_scale)

    def __call__(
        self,
        action_vector: torch.Tensor,
        action_chunk: torch.Tensor,
        action_trajectory: torch.Tensor,
        baseline_vector: torch.Tensor,
        baseline_chunk: torch.Tensor,
        baseline_trajectory: torch.Tensor,
        tau: torch.Tensor,
        condition_tau: torch.Tensor,
    ) -> AdapterOutput:
        with torch.no_grad():  # a block, not a decorator: mutmut mutates undecorated functions only
            c = self.config
            predicted = (action_vector, action_chunk, action_trajectory)
            baseline = (baseline_vector, baseline_chunk, baseline_trajectory)
            b = action_vector.shape[0]
            for name, p, q in zip(BRANCHES, predicted, baseline):
                if p.shape != q.shape:
                    raise ValueError(f"adapter: predicted {name} {list(p.shape)} and baseline {list(q.shape)} differ in shape")
                if p.shape[0] != b:
                    raise ValueError(f"adapter: {name} batch {p.shape[0]} != action_vector batch {b}")
            if tau.dim() != 2 or tau.shape[0] != b or condition_tau.shape != tau.shape:
                raise ValueError(f"adapter: tau {list(tau.shape)} and condition_tau {list(condition_tau.shape)} must both be [{b}, d_tau]")

            dtype = torch.promote_types(action_vector.dtype, torch.float32)
            residual = tuple(p.to(dtype) - q.to(dtype) for p, q in zip(predicted, baseline))
            finite = _finite_rows(tau) & _finite_rows(condition_tau)
            for p, q in zip(predicted, baseline):
                finite = finite & _finite_rows(p) & _finite_rows(q)

            ratios = torch.stack([
                _flat_norm(d) / _flat_norm(q.to(dtype)).clamp_min(c.norm_floor) for d, q in zip(residual, baseline)
            ], dim=-1)
            ratio = ratios.max(dim=-1).values
            risk_residual = c.w_residual * (ratio - c.residual_ratio_free).clamp_min(0.0)

            tau_f, cond_f = tau.to(dtype), condition_tau.to(dtype)
            tau_l2 = tau_f.norm(dim=-1)
            lo, hi = c.tau_l2_range
            out_of_range = torch.zeros_like(tau_l2)
            if lo > 0:
                out_of_range = out_of_range + (lo - tau_l2).clamp_min(0.0) / lo
            out_of_range = out_of_range + (tau_l2 - hi).clamp_min(0.0) / hi
            risk_tau = c.w_tau * out_of_range
            tau_cos = F.cosine_similarity(tau_f, cond_f, dim=-1, eps=1e-8)
            risk_align = c.w_align * (1.0 - tau_cos)

            risk = risk_residual + risk_tau + risk_align
            risk = torch.where(finite, risk, torch.full_like(risk, math.inf))
            abnormal = ~finite | ~torch.isfinite(risk) | (risk > c.max_risk) | ~(ratio <= c.max_residual_ratio)
            scale = torch.where(abnormal, torch.zeros_like(risk), self.scale_from_risk(torch.nan_to_num(risk, nan=0.0)))

            adapted = []
            for d, q in zip(residual, baseline):
                q = q.to(dtype)
                s = scale.view(b, *([1] * (q.dim() - 1)))
                keep = abnormal.view(b, *([1] * (q.dim() - 1)))
                adapted.append(torch.where(keep, q, q + s * torch.nan_to_num(d)))  # NaN residuals never leak
            return AdapterOutput(
                action_vector=adapted[0], action_chunk=adapted[1], action_trajectory=adapted[2],
                scale=scale, risk=risk, risk_residual=risk_residual, risk_tau=risk_tau, risk_align=risk_align,
                residual_ratio=ratio, tau_l2=tau_l2, tau_cos=tau_cos, fallback=abnormal,
            )

    def adapt_output(self, action, tau: torch.Tensor, baseline=None) -> AdapterOutput:
        """Adapt a `sigma_model.ActionOutput` against its own tau = 0 baseline, or against
        `baseline` = (vector, chunk, trajectory) from an external base policy."""
        if baseline is None:
            baseline = (action.baseline_vector, action.baseline_chunk, action.baseline_trajectory)
        return self(action.action_vector, action.action_chunk, action.action_trajectory, *baseline,
                    tau, action.condition_tau)
