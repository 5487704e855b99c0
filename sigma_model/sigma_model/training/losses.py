# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""TRAF and TSAC loss terms of paper section 4.2, as pure functions of tensors.

Notation (batch of B samples; every MSE averages over all elements of its argument):

TRAF (4.2.1), telepathic residual action focusing
    final actions a_x = a_x^base(data) + da_x when the batch carries baseline actions,
                  else a_x = the model's output (its own tau = 0 baseline + da_x)
    MSE_i(x)   = mean over the elements of sample i of (a_x - a_x*)^2
    L_act      = alpha_a MSE(vec) + alpha_b MSE(chunk) + alpha_c MSE(traj)
    h_i        = MSE_i(vec) + MSE_i(chunk) + MSE_i(traj)                 (unweighted, as in the paper)
    H          = the k = ceil(rho B) samples with the largest h_i       (ties: lowest index first)
    L_hard     = alpha_a MSE_H(vec) + alpha_b MSE_H(chunk) + alpha_c MSE_H(traj)
    L_act,total = L_act + lambda_hard L_hard;   hard_ratio = k / B

TSAC (4.2.2), telepathic semantic alignment curriculum
    L_time  = mean_i (1 - cos(z_pool_i, m_prev_i))      ("cos", default; or "mse": mean (z_pool - m_prev)^2)
    L_mi    = InfoNCE between z_pool and f = (c_text + mean(vision_tokens)) / 2 over the batch:
              logits_ij = cos(z_i, f_j) / T, symmetric cross-entropy with the matching pair as the
              positive (a lower bound on mutual information, as in CLIP); 0 for B = 1
    L_sem   = L_time + beta_mi L_mi
    L_intent = -mean_i cos(z_intent_i, m_t_i)           (in [-1, 1]; goes negative as they align)
    L_tau   = mean_i [ c2 ||tau_i||^2 + lambda_collapse max(0, tau_0 - ||tau_i||)^2
                       + eta_var (1 - cos(tau_i, c_act_i)) ]     with c2 = 0.01 in the paper and
              c_act taken in tau space (ActionOutput.condition_tau)
    tau_rms = sqrt(mean(tau^2))
    L_total = L_act,total + w_flow L_flow + w_sem L_sem + w_int L_intent + w_tau L_tau

cos(a, b) uses eps = 1e-8 on the norms (torch.nn.functional.cosine_similarity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

COS_EPS = 1e-8


# --------------------------------------------------------------------- TRAF
def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, ...] x [B, ...] -> [B]: mean squared error over every element of each sample."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {list(pred.shape)} does not match target shape {list(target.shape)}")
    return (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def final_actions(
    output, batch: dict, use_dataset_baseline: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
    """TRAF final actions per level ("vec", "chunk", "traj") and whether each used a data baseline.

    `output` is an ActionOutput-like object (action_*, residual_*); `batch` may hold
    base_action_vector / base_action_chunk / base_action_trajectory.
    """
    levels = {
        "vec": ("vector", "action_vector"),
        "chunk": ("chunk", "action_chunk"),
        "traj": ("trajectory", "action_trajectory"),
    }
    actions, used = {}, {}
    for level, (suffix, model_name) in levels.items():
        base = batch.get(f"base_action_{suffix}") if use_dataset_baseline else None
        residual = getattr(output, f"residual_{suffix}")
        if base is not None:
            base = base.to(residual.device, torch.float32)
            if base.shape != residual.shape:
                raise ValueError(
                    f"base_action_{suffix} has shape {list(base.shape)}, the model predicts {list(residual.shape)}"
                )
            actions[level], used[level] = base + residual, True
        else:
            actions[level], used[level] = getattr(output, model_name), False
    return actions, used


@dataclass
class TRAFResult:
    l_act: torch.Tensor  # alpha-weighted MSE over the batch
    l_hard: torch.Tensor  # alpha-weighted MSE over the hard subset H
    l_act_total: torch.Tensor  # l_act + lambda_hard * l_hard
    difficulty: torch.Tensor  # h_i [B] (detached)
    hard_index: torch.Tensor  # indices of H [k]
    hard_ratio: float  # k / B
    mse: dict[str, torch.Tensor]  # per-level batch MSE (detached), keys vec/chunk/traj


def hard_count(batch_size: int, rho: float) -> int:
    """K = ceil(rho * B), at least 1 and at most B (rho in (0, 1])."""
    if batch_size <= 0:
        raise ValueError("batch must not be empty")
    if not 0.0 < rho <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    # the small tolerance keeps ceil(0.3 * 10) == 3 despite 0.3 * 10 == 3.0000000000000004
    return max(1, min(batch_size, math.ceil(rho * batch_size - 1e-9)))


def traf_loss(
    actions: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    alphas: tuple[float, float, float] = (1.0, 1.0, 1.0),
    rho: float = 0.3,
    lambda_hard: float = 1.0,
) -> TRAFResult:
    """L_act, h_i, the top-k hard subset and L_act,total (see the module docstring).

    actions / targets: dicts with keys "vec" [B,A], "chunk" [B,T,A], "traj" [B,T',A].
    """
    levels = ("vec", "chunk", "traj")
    per = {lv: per_sample_mse(actions[lv], targets[lv]) for lv in levels}
    b = per["vec"].shape[0]
    l_act = sum(a * per[lv].mean() for a, lv in zip(alphas, levels))
    difficulty = sum(per[lv] for lv in levels).detach()
    k = hard_count(b, rho)
    # stable descending sort: equal difficulties keep their batch order (deterministic)
    hard_index = torch.sort(difficulty, descending=True, stable=True).indices[:k]
    l_hard = sum(a * per[lv][hard_index].mean() for a, lv in zip(alphas, levels))
    return TRAFResult(
        l_act=l_act, l_hard=l_hard, l_act_total=l_act + lambda_hard * l_hard,
        difficulty=difficulty, hard_index=hard_index, hard_ratio=k / b,
        mse={lv: per[lv].mean().detach() for lv in levels},
    )


# --------------------------------------------------------------------- TSAC
def time_consistency_loss(z_pool: torch.Tensor, m_prev: torch.Tensor, kind: str = "cos") -> torch.Tensor:
    """L_time(z_pool, m_prev): mean (1 - cos) ("cos") or mean squared error ("mse")."""
    if z_pool.shape != m_prev.shape:
        raise ValueError(f"z_pool {list(z_pool.shape)} and m_prev {list(m_prev.shape)} must have the same shape")
    if kind == "cos":
        return (1.0 - F.cosine_similarity(z_pool.float(), m_prev.float(), dim=-1, eps=COS_EPS)).mean()
    if kind == "mse":
        return F.mse_loss(z_pool.float(), m_prev.float())
    raise ValueError(f"unknown time loss {kind!r}; expected 'cos' or 'mse'")


def info_nce(
    anchor: torch.Tensor, positive: torch.Tensor, temperature: float = 0.1, symmetric: bool = True
) -> torch.Tensor:
    """Contrastive InfoNCE over the batch: pair i is the positive, every j != i a negative.

    logits_ij = cos(anchor_i, positive_j) / temperature; loss = CE(logits, i) (averaged with
    CE(logits^T, i) when symmetric). Zero for a batch of one.
    """
    if anchor.shape != positive.shape or anchor.dim() != 2:
        raise ValueError(
            f"info_nce needs two [B,d] tensors of one shape, got {list(anchor.shape)} and {list(positive.shape)}"
        )
    a = F.normalize(anchor.float(), dim=-1, eps=COS_EPS)
    p = F.normalize(positive.float(), dim=-1, eps=COS_EPS)
    logits = a @ p.t() / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.t(), labels))
    return loss


def fusion_representation(c_text: torch.Tensor, vision_tokens: torch.Tensor) -> torch.Tensor:
    """Return the text + vision pooled vector L_mi contrasts z_pool against: (c_text + mean_n V_n) / 2."""
    return 0.5 * (c_text.float() + vision_tokens.float().mean(dim=1))


def semantic_loss(
    z_pool: torch.Tensor, m_prev: torch.Tensor, fusion: torch.Tensor,
    beta_mi: float = 0.1, temperature: float = 0.1, time_kind: str = "cos",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_sem = L_time + beta_mi L_mi; returns (L_sem, L_time, L_mi)."""
    l_time = time_consistency_loss(z_pool, m_prev, time_kind)
    l_mi = info_nce(z_pool, fusion, temperature)
    return l_time + beta_mi * l_mi, l_time, l_mi


def intent_loss(z_intent: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """L_intent = -mean cos(z_intent, m_t)."""
    if z_intent.shape != memory.shape:
        raise ValueError(f"z_intent {list(z_intent.shape)} and memory {list(memory.shape)} must have the same shape")
    return -F.cosine_similarity(z_intent.float(), memory.float(), dim=-1, eps=COS_EPS).mean()


def tau_loss(
    tau: torch.Tensor, condition_tau: torch.Tensor, tau_0: float = 1.0, lambda_collapse: float = 0.1,
    eta_var: float = 0.1, l2_weight: float = 0.01,
) -> torch.Tensor:
    """L_tau = mean_i [l2_weight ||tau||^2 + lambda_collapse max(0, tau_0 - ||tau||)^2 + eta_var (1 - cos(tau, c))]."""
    if tau.shape != condition_tau.shape:
        raise ValueError(
            f"tau {list(tau.shape)} and condition_tau {list(condition_tau.shape)} must have the same shape"
        )
    tau = tau.float()
    norm = tau.norm(dim=-1)
    hinge = torch.clamp(tau_0 - norm, min=0.0)
    cos = F.cosine_similarity(tau, condition_tau.float(), dim=-1, eps=COS_EPS)
    return (l2_weight * norm.pow(2) + lambda_collapse * hinge.pow(2) + eta_var * (1.0 - cos)).mean()


def tau_rms(tau: torch.Tensor) -> torch.Tensor:
    """sqrt(mean(tau^2)) over every element (Table 1's tau_rms)."""
    return tau.detach().float().pow(2).mean().sqrt()


def total_loss(
    l_act_total: torch.Tensor, l_sem: torch.Tensor, l_intent: torch.Tensor, l_tau: torch.Tensor,
    w_sem: float, w_int: float, w_tau: float, l_flow: torch.Tensor | None = None, w_flow: float = 1.0,
) -> torch.Tensor:
    """L_total(t) = L_act,total + w_flow L_flow + w_sem(t) L_sem + w_int(t) L_intent + w_tau(t) L_tau."""
    total = l_act_total + w_sem * l_sem + w_int * l_intent + w_tau * l_tau
    if l_flow is not None:
        total = total + w_flow * l_flow
    return total


def aux_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the vision workspace's auxiliary head (e.g. the object pose in simulation)."""
    if prediction.shape != target.shape:
        raise ValueError(f"aux_target has shape {list(target.shape)}, the aux head predicts {list(prediction.shape)}")
    return F.mse_loss(prediction.float(), target.float())
