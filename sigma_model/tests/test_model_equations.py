# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The paper's equations hold in the implementation, not only the shapes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sigma_model import SigmaConfig, SigmaModel
from sigma_model.layers import cross_attend
from sigma_model.trajectory_dit import TrajectoryDiT, timestep_embedding

from sigma_model.testing import TEXT, make_observation, randomize_, small_config

def test_vision_modulation_gate_closed_gives_base(model, obs, config):
    randomize_(model.vision.modulator.film)
    v_base = torch.randn(2, config.n_vision_tokens, config.d_model)
    tau = torch.randn(2, config.d_tau)
    with torch.no_grad():
        model.vision.modulator.mod_log_scale.fill_(-1e4)  # exp(theta_mod) == 0
        assert torch.equal(model.vision.modulator(v_base, tau), v_base)
        model.vision.modulator.mod_log_scale.fill_(0.0)
        assert not torch.allclose(model.vision.modulator(v_base, tau), v_base)


def test_vision_modulation_matches_film_equation(model, config):
    mod = model.vision.modulator
    randomize_(mod.film)
    with torch.no_grad():
        mod.tau_log_scale.fill_(0.3)
        mod.mod_log_scale.fill_(-0.5)
        v_base = torch.randn(2, config.n_vision_tokens, config.d_model)
        tau = torch.randn(2, config.d_tau)
        lin1, lin2 = mod.film[0], mod.film[3]
        h = nn.functional.gelu(torch.exp(torch.tensor(0.3)) * tau @ lin1.weight.T + lin1.bias)
        gamma, beta = (h @ lin2.weight.T + lin2.bias).chunk(2, dim=-1)
        v_film = (1 + gamma[:, None]) * v_base + beta[:, None]
        expected = v_base + torch.exp(torch.tensor(-0.5)) * (v_film - v_base)
        torch.testing.assert_close(mod(v_base, tau), expected)


def test_memory_gate_one_keeps_previous_memory(model, config):
    mem = model.language.memory
    z = torch.randn(2, config.d_model)
    m_prev = torch.randn(2, config.d_model)
    with torch.no_grad():
        mem.gate.weight.zero_()
        mem.gate.bias.fill_(1e4)  # sigmoid -> exactly 1
        m_t, lam = mem(z, m_prev)
        assert torch.equal(lam, torch.ones_like(lam))
        assert torch.equal(m_t, m_prev)
        mem.gate.bias.fill_(-1e4)  # lambda -> 0: m_t = u = GELU(W_u z + b_u)
        m_t, _ = mem(z, m_prev)
        torch.testing.assert_close(m_t, nn.functional.gelu(mem.update(z)))


def test_memory_recurrence_mixes_with_lambda(model, config):
    mem = model.language.memory
    z, m_prev = torch.randn(2, config.d_model), torch.randn(2, config.d_model)
    with torch.no_grad():
        m_t, lam = mem(z, m_prev)
        u = nn.functional.gelu(mem.update(z))
        expected_lam = torch.sigmoid(mem.gate(torch.cat([m_prev, z], -1)))
        torch.testing.assert_close(lam, expected_lam)
        torch.testing.assert_close(m_t, lam * m_prev + (1 - lam) * u)


def test_language_modulator_is_identity_at_tau_zero(model, config):
    hidden = torch.randn(2, 7, config.d_model)
    with torch.no_grad():
        out, _ = model.language.modulator(hidden, torch.zeros(2, config.d_tau))
        assert torch.equal(out, hidden)
        out, _ = model.language.modulator(hidden, torch.randn(2, config.d_tau))
        assert not torch.allclose(out, hidden)


def test_telepathy_projector_reads_the_six_vectors(model, obs, config):
    text = model.tokenize(TEXT)
    with torch.no_grad():
        vis = model.vision_stage(obs)
        lang = model.language_stage(text, vis.vision_tokens, vis.state_tokens)
        x = torch.cat([lang.memory, lang.z_intent, lang.c_env, lang.c_beh, lang.z_sem_pool, lang.c_text], -1)
        torch.testing.assert_close(model.language.telepathy_projector(x), lang.tau)
        torch.testing.assert_close(lang.z_sem_pool, lang.z_sem.mean(1))
        intent = model.language.intent_head(torch.cat([lang.memory, lang.c_env, lang.c_beh], -1))
        torch.testing.assert_close(intent, lang.z_intent)


def test_telepathy_off_is_exactly_the_tau_zero_baseline(model, obs):
    randomize_(model.action.residual_head, seed=3)
    text = model.tokenize(TEXT)
    with torch.no_grad():
        on = model(obs, text, generator=torch.Generator().manual_seed(5))
        off = model(obs, text, telepathy=False, generator=torch.Generator().manual_seed(5))
    for branch in ("vector", "chunk", "trajectory"):
        assert torch.equal(getattr(off.action, f"action_{branch}"), getattr(off.action, f"baseline_{branch}"))
        assert torch.equal(
            getattr(off.action, f"residual_{branch}"), torch.zeros_like(getattr(off.action, f"residual_{branch}"))
        )
        a_on = getattr(on.action, f"action_{branch}")
        assert torch.equal(a_on, getattr(on.action, f"baseline_{branch}") + getattr(on.action, f"residual_{branch}"))
    assert not torch.allclose(on.motor_commands, off.motor_commands)
    # the action branch's baseline does not depend on the tau it is given
    with torch.no_grad():
        vis = model.vision_stage(obs, None)
        lang = model.language_stage(text, vis.vision_tokens, vis.state_tokens, telepathy=False)
        for tau in (torch.zeros_like(lang.tau), 10 * torch.randn_like(lang.tau)):
            act = model.action_stage(lang.high_level_rep, lang.high_level_mask, tau, vis.state_tokens,
                                     generator=torch.Generator().manual_seed(5))
            assert torch.equal(act.baseline_vector, off.action.action_vector)
            assert torch.equal(act.baseline_trajectory, off.action.action_trajectory)


def test_telepathy_off_is_tau_zero_everywhere(model, obs):
    """Telepathy off.

    Nothing on the path moves when tau or tau_prev move (vision FiLM, language modulator, action residual all see tau =
    0); with telepathy on, the same perturbations move it.
    """
    for module in (model.action.residual_head, model.vision.modulator.film, model.language.modulator.bias):
        randomize_(module, seed=4)
    with torch.no_grad():
        model.vision.modulator.mod_log_scale.fill_(0.0)
        model.language.modulator.log_scale.fill_(0.0)
    text = model.tokenize(TEXT)
    runs = {}
    for telepathy in (True, False):
        for variant in ("plain", "tau_prev", "tau"):
            torch.manual_seed(0)
            m = copy.deepcopy(model)
            if variant == "tau":  # another telepathy projector: another tau from the same inputs
                randomize_(m.language.telepathy_projector, seed=9)
            tau_prev = 3 * torch.randn(2, model.config.d_tau, generator=torch.Generator().manual_seed(2)) \
                if variant == "tau_prev" else None
            with torch.no_grad():
                runs[telepathy, variant] = m(obs, text, tau_prev=tau_prev, telepathy=telepathy,
                                             generator=torch.Generator().manual_seed(5))
    for variant in ("tau_prev", "tau"):
        off, off_ref = runs[False, variant], runs[False, "plain"]
        for name in ("action_vector", "action_chunk", "action_trajectory"):
            assert torch.equal(getattr(off.action, name), getattr(off_ref.action, name)), (variant, name)
        assert torch.equal(off.language.high_level_rep, off_ref.language.high_level_rep), variant
        assert torch.equal(off.motor_commands, off_ref.motor_commands), variant
        on, on_ref = runs[True, variant], runs[True, "plain"]
        assert not torch.allclose(on.action.action_trajectory, on_ref.action.action_trajectory), variant
    assert not torch.equal(runs[True, "tau"].language.tau, runs[True, "plain"].language.tau)


def test_residual_head_starts_at_zero_so_untrained_sigma_equals_baseline(model, obs):
    text = model.tokenize(TEXT)
    with torch.no_grad():
        on = model(obs, text, generator=torch.Generator().manual_seed(0))
    assert torch.equal(on.action.action_chunk, on.action.baseline_chunk)


def test_diffusion_sampler_deterministic_under_seed_and_depends_on_steps():
    torch.manual_seed(0)
    dit = TrajectoryDiT(action_dim=3, traj_len=5, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    randomize_(dit, seed=7)
    ctx, valid, cond = torch.randn(2, 4, 16), torch.ones(2, 4, dtype=torch.bool), torch.randn(2, 16)
    with torch.no_grad():
        a = dit.sample(ctx, valid, cond, steps=4, generator=torch.Generator().manual_seed(1))
        b = dit.sample(ctx, valid, cond, steps=4, generator=torch.Generator().manual_seed(1))
        c = dit.sample(ctx, valid, cond, steps=8, generator=torch.Generator().manual_seed(1))
        d = dit.sample(ctx, valid, cond, steps=4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, d)


def test_diffusion_sampler_integrates_the_velocity_field():
    """One Euler step from noise x0 gives x0 + v(x0, 0)."""
    dit = TrajectoryDiT(action_dim=2, traj_len=3, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    randomize_(dit, seed=2)
    ctx, valid, cond = torch.randn(1, 2, 16), torch.ones(1, 2, dtype=torch.bool), torch.randn(1, 16)
    with torch.no_grad():
        x0 = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(9))
        expected = x0 + dit.velocity(x0, torch.zeros(1), ctx, valid, cond)
        got = dit.sample(ctx, valid, cond, steps=1, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("training", [False, True])
def test_cross_attention_is_multihead_attentions_own(training):
    """cross_attend computes what nn.MultiheadAttention computes from the same weights, bit for bit.

    It serves the pools, the resampler, the action queries and the DiT's cross-attention. Checked with padded keys,
    and in training with its dropout under the same random state; padded keys are ignored and valid ones are not.
    """
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(16, 4, dropout=0.3, batch_first=True).train(training)
    q, ctx = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[0, 4:] = False
    for v in (None, valid):
        torch.manual_seed(1)
        own = attn(q, ctx, ctx, key_padding_mask=None if v is None else ~v, need_weights=False)[0]
        torch.manual_seed(1)
        assert torch.equal(cross_attend(attn, q, ctx, v), own)
    if not training:
        changed = ctx.clone()
        changed[0, 5] += 1.0
        assert torch.equal(cross_attend(attn, q, changed, valid)[0], cross_attend(attn, q, ctx, valid)[0])
        changed[0, 1] += 1.0
        assert not torch.equal(cross_attend(attn, q, changed, valid)[0], cross_attend(attn, q, ctx, valid)[0])


def per_step_velocity(dit, x, t, ctx, valid, cond):
    """Compute the DiT velocity as written before the per-plan cache.

    Condition, adaLN and the cross-attention's keys and values are recomputed from scratch, cross-attention
    through nn.MultiheadAttention itself.
    """
    c = dit.time_mlp(timestep_embedding(t, dit.d_model)) + dit.cond_proj(cond)
    h = dit.in_proj(x) + dit.pos
    for blk in dit.blocks:
        s1, b1, g1, s2, b2, g2 = blk.ada(nn.functional.silu(c)).unsqueeze(1).chunk(6, dim=-1)
        y = blk.norm1(h) * (1 + s1) + b1
        h = h + g1 * blk.self_attn(y, y, y, need_weights=False)[0]
        h = h + blk.cross_attn(blk.norm_cross(h), ctx, ctx, key_padding_mask=~valid, need_weights=False)[0]
        y = blk.norm2(h) * (1 + s2) + b2
        h = h + g2 * blk.mlp(y)
    return dit.out(dit.out_norm(h))


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_cached_condition_sampler_equals_the_per_step_path(steps):
    """Check that sample(), with the step conditions and cross-attention keys/values once per plan, is exact.

    Its trajectory equals Euler integration of the per-step velocity (padded context, batch 2, 2 blocks).
    """
    dit = TrajectoryDiT(action_dim=3, traj_len=5, d_model=16, n_heads=2, n_layers=2, dropout=0.0).eval()
    randomize_(dit, seed=4)
    g = torch.Generator().manual_seed(5)
    ctx, cond = torch.randn(2, 6, 16, generator=g), torch.randn(2, 16, generator=g)
    valid = torch.tensor([[True] * 6, [True, True, True, False, True, False]])
    with torch.no_grad():
        x = 0.7 * torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(9))
        t = torch.tensor([0.3, 0.8])
        torch.testing.assert_close(dit.velocity(x, t, ctx, valid, cond), per_step_velocity(dit, x, t, ctx, valid, cond))
        expected = x.clone()
        for i in range(steps):
            expected = expected + (1.0 / steps) * per_step_velocity(
                dit, expected, torch.full((2,), i / steps), ctx, valid, cond
            )
        got = dit.sample(ctx, valid, cond, steps=steps, generator=torch.Generator().manual_seed(9), noise_scale=0.7)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected, x, atol=1e-3)  # the velocity field moved the trajectory


def test_diffusion_noise_scale_scales_the_start_and_zero_removes_the_randomness():
    dit = TrajectoryDiT(action_dim=2, traj_len=3, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    randomize_(dit, seed=2)
    ctx, valid, cond = torch.randn(1, 2, 16), torch.ones(1, 2, dtype=torch.bool), torch.randn(1, 16)
    with torch.no_grad():
        x0 = 0.3 * torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(9))
        expected = x0 + dit.velocity(x0, torch.zeros(1), ctx, valid, cond)
        got = dit.sample(ctx, valid, cond, steps=1, generator=torch.Generator().manual_seed(9), noise_scale=0.3)
        zero = [dit.sample(ctx, valid, cond, steps=4, generator=torch.Generator().manual_seed(s), noise_scale=0.0)
                for s in (1, 2)]
        from_mean = torch.zeros(1, 3, 2)
        for i in range(4):
            from_mean = from_mean + 0.25 * dit.velocity(from_mean, torch.full((1,), i * 0.25), ctx, valid, cond)
    torch.testing.assert_close(got, expected)
    assert torch.equal(zero[0], zero[1])
    torch.testing.assert_close(zero[0], from_mean)


def test_model_config_noise_scale_reaches_the_sampler(config, obs):
    text = ["pick the cube"] * obs.image.shape[0]
    torch.manual_seed(0)
    model = SigmaModel(SigmaConfig.from_dict({**config.to_dict(), "diffusion_noise_scale": 0.0})).eval()
    with torch.no_grad():
        a, b = (model(obs, model.tokenize(text), generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    assert torch.equal(a.action.action_trajectory, b.action.action_trajectory)
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="diffusion_noise_scale"):
            SigmaConfig.from_dict({**config.to_dict(), "diffusion_noise_scale": bad})


def test_flow_matching_training_fits_a_fixed_trajectory():
    torch.manual_seed(0)
    dit = TrajectoryDiT(action_dim=2, traj_len=4, d_model=32, n_heads=2, n_layers=1, dropout=0.0)
    ctx, valid, cond = torch.zeros(8, 1, 32), torch.ones(8, 1, dtype=torch.bool), torch.zeros(8, 32)
    target = torch.linspace(-1, 1, 8).view(1, 4, 2).expand(8, -1, -1)
    opt = torch.optim.Adam(dit.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(250):
        loss, _ = dit.flow_loss(target, ctx, valid, cond, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        sample = dit.sample(ctx, valid, cond, steps=20, generator=torch.Generator().manual_seed(3))
    assert (sample - target).pow(2).mean() < 0.05


def test_fusion_and_controller_equations(model, config):
    w = torch.tensor([2.0, 1.0, 3.0])
    model.action.fusion_weights.copy_(w)
    vec = torch.randn(2, config.action_dim)
    chunk = torch.randn(2, config.chunk_len, config.action_dim)
    traj = torch.randn(2, config.traj_len, config.action_dim)
    state = torch.randn(2, config.state_dim)
    u0 = (2 * vec + chunk[:, 0] + 3 * traj[:, 0]) / 6
    torch.testing.assert_close(model.control_stage(vec, chunk, traj, state, 0), u0)
    u2 = (chunk[:, 2] + 3 * traj[:, 2]) / 4
    torch.testing.assert_close(model.control_stage(vec, chunk, traj, state, 2), u2)
    late = model.control_stage(vec, chunk, traj, state, 100)  # past the plan: its last step
    torch.testing.assert_close(late, (chunk[:, -1] + 3 * traj[:, -1]) / 4)
    half = SigmaModel(small_config(controller_gain=0.5), workspaces=("action",))
    half.action.fusion_weights.copy_(w)
    torch.testing.assert_close(half.control_stage(vec, chunk, traj, state, 0), state + 0.5 * (u0 - state))


def test_tau_changes_next_vision_step(model, obs):
    randomize_(model.vision.modulator.film, seed=4)
    with torch.no_grad():
        a = model.vision_stage(obs, None)
        b = model.vision_stage(obs, torch.randn(2, model.config.d_tau))
    assert torch.equal(a.vision_tokens_base, b.vision_tokens_base)
    assert not torch.allclose(a.vision_tokens, b.vision_tokens)


def test_depth_and_audio_tokens_are_used():
    cfg = small_config(use_depth=True)
    torch.manual_seed(0)
    model = SigmaModel(cfg, workspaces=("vision",)).eval()
    obs = make_observation(cfg)
    with torch.no_grad():
        plain = model.vision_stage(obs)
        obs.depth = torch.rand(2, 1, cfg.image_size, cfg.image_size)
        with_depth = model.vision_stage(obs)
        obs.audio = None
        no_audio = model.vision_stage(obs)
    assert not torch.allclose(plain.vision_tokens, with_depth.vision_tokens)
    assert not torch.allclose(with_depth.vision_tokens, no_audio.vision_tokens)


def test_flow_loss_estimate_is_the_one_step_clean_prediction():
    """x1_hat = x_t + (1 - t) v(x_t, t), recomputed from the same seeded noise and t."""
    dit = TrajectoryDiT(action_dim=2, traj_len=3, d_model=16, n_heads=2, n_layers=1, dropout=0.0)
    randomize_(dit, seed=5)
    ctx, valid, cond = torch.randn(2, 2, 16), torch.ones(2, 2, dtype=torch.bool), torch.randn(2, 16)
    target = torch.randn(2, 3, 2)
    with torch.no_grad():
        loss, estimate = dit.flow_loss(target, ctx, valid, cond, generator=torch.Generator().manual_seed(4))
        g = torch.Generator().manual_seed(4)
        noise = torch.randn(target.shape, generator=g)
        t = torch.rand(2, generator=g)[:, None, None]
        x_t = (1 - t) * noise + t * target
        v = dit.velocity(x_t, t.view(2), ctx, valid, cond)
    torch.testing.assert_close(loss, ((v - (target - noise)) ** 2).mean())
    torch.testing.assert_close(estimate, x_t + (1 - t) * v)


def test_env_state_joins_the_state_encoder():
    cfg = small_config(env_state_dim=3)
    torch.manual_seed(0)
    model = SigmaModel(cfg, workspaces=("vision",)).eval()
    obs = make_observation(cfg)
    with pytest.raises(ValueError, match="env_state .* is required"):
        model.vision_stage(obs)
    obs.env_state = torch.zeros(2, 3)
    with torch.no_grad():
        a = model.vision_stage(obs).state_tokens
        obs.env_state = torch.ones(2, 3)
        b = model.vision_stage(obs).state_tokens
    assert not torch.allclose(a, b)
    plain = SigmaModel(small_config(), workspaces=("vision",))
    with pytest.raises(ValueError, match="env_state_dim = 0"):
        plain.vision_stage(obs)


@pytest.mark.parametrize("stride, expected", [
    (4, [-1 + 12 / 7, -1 + 2 / 7]),  # 8x8 maps: the square is cell (row 1, col 6)
    (2, [-1 + 25 / 15, -1 + 5 / 15]),  # 16x16 maps: cells rows 2-3, cols 12-13 (centre 2.5, 12.5)
])
def test_keypoint_embed_is_the_expected_location_of_each_feature_map(stride, expected):
    """Spatial softmax: a feature map peaked at one place puts its keypoint there, in [-1, 1]."""
    from sigma_model.vision_workspace import KeypointEmbed

    embed = KeypointEmbed(channels=3, n_keypoints=2, d_model=8, stride=stride)
    image = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        for conv in embed.stem:  # a stem that passes the red channel through (x 50, sharp softmax)
            if isinstance(conv, nn.Conv2d):
                conv.weight.zero_(), conv.bias.zero_()
                conv.weight[:, 0, conv.kernel_size[0] // 2, conv.kernel_size[1] // 2] = (
                    50.0 if conv.out_channels == 2 else 1.0
                )
        image[0, 0, 4:8, 24:28] = 1.0  # red square: rows 4-7 (top), columns 24-27 (right)
        xy = embed.keypoints(image)[0]
    assert xy.shape == (2, 2)
    torch.testing.assert_close(xy[0], torch.tensor(expected), atol=0.05, rtol=0)


def test_image_keypoints_let_a_small_object_move_the_vision_tokens():
    cfg = small_config(image_keypoints=4)
    torch.manual_seed(0)
    model = SigmaModel(cfg, workspaces=("vision",)).eval()
    obs = make_observation(cfg, batch=1)
    obs.image = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        plain = model.vision.keypoint_embed.keypoints(obs.image)
        obs.image[0, 0, 4:8, 4:8] = 1.0
        moved = model.vision.keypoint_embed.keypoints(obs.image)
    assert (moved - plain).abs().max() > 0.05
    with pytest.raises(ValueError, match="image_keypoints"):
        small_config(image_keypoints=-1)
    with pytest.raises(ValueError, match="keypoint_stride"):
        small_config(keypoint_stride=3)


def test_query_context_state_plus_rep_lets_the_action_queries_read_the_rep():
    """"state".

    Paths A/B see high_level_rep only through the pooled c_act; "state+rep": the action queries attend to it as well (a
    change of one rep token moves them, a masked one does not).
    """
    for context in ("state", "state+rep"):
        cfg = small_config(query_context=context)
        torch.manual_seed(0)
        qg = SigmaModel(cfg, workspaces=("action",)).eval().action.query_generator
        rep = torch.randn(1, 6, cfg.d_model)
        mask = torch.ones(1, 6, dtype=torch.bool)
        st, c_act = torch.randn(1, cfg.n_state_tokens, cfg.d_model), torch.randn(1, cfg.d_model)
        changed, masked = rep.clone(), mask.clone()
        changed[0, 3] += 1.0
        masked[0, 3] = False

        def queries(r, m):
            return qg(c_act, st, *((r, m) if context == "state+rep" else (None, None)))

        with torch.no_grad():
            assert torch.allclose(queries(rep, mask), queries(changed, mask)) == (context == "state")
            torch.testing.assert_close(queries(changed, masked), queries(rep, masked))
    with pytest.raises(ValueError, match="query_context"):
        small_config(query_context="vision")
