"""Triplet losses: formulas against plain Python loops, numerical safety, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trafficsiam.errors import ConfigError
from trafficsiam.losses import (
    LOSSES,
    Loss,
    LosslessTripletLoss,
    TripletLoss,
    TripletMarginLoss,
    base,
    make_loss,
    pairwise_squared_distances,
    squared_distances,
)
from trafficsiam.model import HEADS


def _sqdist(u: list[float], v: list[float]) -> float:
    return sum((a - b) ** 2 for a, b in zip(u, v, strict=True))


def _lossless_loop(anchor, positive, negative, n: int, beta: float, eps: float) -> float:
    total = 0.0
    for a, p, q in zip(anchor, positive, negative, strict=True):
        d_ap, d_an = _sqdist(a, p), _sqdist(a, q)
        total += -math.log(-d_ap / beta + 1 + eps) - math.log(-(n - d_an) / beta + 1 + eps)
    return total / len(anchor)


def _margin_loop(anchor, positive, negative, margin: float) -> float:
    total = 0.0
    for a, p, q in zip(anchor, positive, negative, strict=True):
        total += max(_sqdist(a, p) - _sqdist(a, q) + margin, 0.0)
    return total / len(anchor)


# Hand-made embeddings in [0,1]^3, including corners and the centre.
ANCHOR = [[0.1, 0.2, 0.3], [0.9, 0.9, 0.1], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [0.3, 0.7, 0.2]]
POSITIVE = [[0.15, 0.25, 0.2], [0.8, 0.95, 0.3], [0.4, 0.6, 0.5], [0.1, 0.0, 0.2], [0.9, 0.1, 0.8]]
NEGATIVE = [[0.9, 0.8, 0.7], [0.1, 0.2, 0.9], [0.5, 0.45, 0.52], [1.0, 1.0, 1.0], [0.35, 0.6, 0.25]]


def _tensors(dtype=torch.float64):
    return tuple(torch.tensor(x, dtype=dtype) for x in (ANCHOR, POSITIVE, NEGATIVE))


@pytest.mark.parametrize("beta", [None, 3.0, 5.5])
def test_lossless_matches_python_loop(beta):
    loss = LosslessTripletLoss(3, beta=beta)
    got = loss(*_tensors()).item()
    want = _lossless_loop(ANCHOR, POSITIVE, NEGATIVE, 3, beta or 3.0, 1e-8)
    assert got == pytest.approx(want, abs=1e-6)
    # float32 too (the training dtype)
    assert loss(*_tensors(torch.float32)).item() == pytest.approx(want, abs=1e-5)


def test_lossless_per_triplet_matches_loop_each():
    loss = LosslessTripletLoss(3)
    a, p, n = _tensors()
    per = loss.per_triplet(squared_distances(a, p), squared_distances(a, n))
    assert per.shape == (len(ANCHOR),)
    for i in range(len(ANCHOR)):
        want = _lossless_loop([ANCHOR[i]], [POSITIVE[i]], [NEGATIVE[i]], 3, 3.0, 1e-8)
        assert per[i].item() == pytest.approx(want, abs=1e-6)


def test_lossless_beta_defaults_to_embedding_dim():
    assert LosslessTripletLoss(8).beta == 8.0
    assert LosslessTripletLoss(8, beta=None).beta == 8.0
    assert LosslessTripletLoss(8, beta=12).beta == 12.0


def test_lossless_beta_below_n_message():
    with pytest.raises(ConfigError) as err:
        LosslessTripletLoss(8, beta=4)
    assert str(err.value) == (
        "loss.beta must be at least the embedding dimension 8 (beta >= N keeps the log "
        "argument positive), got 4; set loss.beta to 8 or more or leave it empty for N"
    )
    assert err.value.exit_code == 2


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"embedding_dim": 0}, "model.embedding_dim"),
        ({"embedding_dim": 2.5}, "model.embedding_dim"),
        ({"embedding_dim": 4, "eps": 0.0}, "loss.eps"),
        ({"embedding_dim": 4, "eps": -1e-8}, "loss.eps"),
        ({"embedding_dim": 4, "beta": float("nan")}, "loss.beta"),
        ({"embedding_dim": 4, "min_log_arg": 0.0}, "min_log_arg"),
        ({"embedding_dim": 4, "min_log_arg": 1.0}, "min_log_arg"),
    ],
)
def test_lossless_bad_parameters(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        LosslessTripletLoss(**kwargs)


def test_lossless_accepts_numpy_integer_dim():
    assert LosslessTripletLoss(np.int64(4)).embedding_dim == 4


def test_lossless_ideal_triplet_is_about_zero():
    eps = 1e-8
    loss = LosslessTripletLoss(3, eps=eps)
    a = torch.zeros(1, 3, dtype=torch.float64)
    n = torch.ones(1, 3, dtype=torch.float64)
    value = loss(a, a.clone(), n).item()
    assert value == pytest.approx(-2 * math.log1p(eps), abs=1e-12)
    value32 = loss(a.float(), a.float(), n.float()).item()
    assert abs(value32) < 1e-6


def test_lossless_extremes_finite_value_and_gradient():
    n_dim = 3
    loss = LosslessTripletLoss(n_dim)
    # anchor == negative (d_an = 0) and positive at the opposite corner (d_ap = N)
    anchor = torch.zeros(2, n_dim, requires_grad=True)
    positive = torch.ones(2, n_dim, requires_grad=True)
    negative = torch.zeros(2, n_dim, requires_grad=True)
    value = loss(anchor, positive, negative)
    value.backward()
    assert torch.isfinite(value)
    for t in (anchor, positive, negative):
        assert t.grad is not None and torch.isfinite(t.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lossless_gradient_bounded_over_whole_range(dtype):
    n_dim = 8
    loss = LosslessTripletLoss(n_dim)
    assert loss.max_grad == pytest.approx(1.0 / (8 * 1e-4))
    grid = torch.linspace(0, n_dim, 401, dtype=dtype)
    d_ap, d_an = torch.meshgrid(grid, grid, indexing="ij")
    d_ap = d_ap.reshape(-1).clone().requires_grad_(True)
    d_an = d_an.reshape(-1).clone().requires_grad_(True)
    per = loss.per_triplet(d_ap, d_an)
    per.sum().backward()
    assert torch.isfinite(per).all()
    assert torch.isfinite(d_ap.grad).all() and torch.isfinite(d_an.grad).all()
    assert d_ap.grad.abs().max().item() <= loss.max_grad * (1 + 1e-5)
    assert d_an.grad.abs().max().item() <= loss.max_grad * (1 + 1e-5)
    # Right direction everywhere, including d_an = 0 and d_ap = N.
    assert (d_ap.grad > 0).all() and (d_an.grad < 0).all()
    # The cap is reached exactly at the worst points, i.e. it is the documented bound.
    assert d_an.grad.abs().max().item() == pytest.approx(loss.max_grad, rel=1e-4)


def test_lossless_value_matches_formula_above_floor_and_is_monotone_below():
    n_dim, eps = 8, 1e-8
    loss = LosslessTripletLoss(n_dim, eps=eps)
    # d_an / beta at the floor and above: exact formula.
    d_an = torch.tensor([1e-4 * 8, 1e-3, 0.5, 4.0, 8.0], dtype=torch.float64)
    d_ap = torch.full_like(d_an, 2.0)
    got = loss.per_triplet(d_ap, d_an)
    for g, dn in zip(got.tolist(), d_an.tolist(), strict=True):
        want = -math.log(-2.0 / 8 + 1 + eps) - math.log(-(8 - dn) / 8 + 1 + eps)
        assert g == pytest.approx(want, rel=1e-9)
    # Below the floor: finite, and still decreasing as the negative moves away.
    small = torch.tensor([0.0, 1e-7, 1e-5, 1e-4, 8e-4], dtype=torch.float64)
    vals = loss.per_triplet(torch.full_like(small, 2.0), small)
    assert torch.isfinite(vals).all()
    assert (vals[1:] < vals[:-1]).all()


def test_lossless_near_identical_negative_gradient_bounded():
    loss = LosslessTripletLoss(4)
    anchor = torch.full((1, 4), 0.5, dtype=torch.float64, requires_grad=True)
    negative = (anchor.detach() + 1e-6).requires_grad_(True)
    positive = torch.full((1, 4), 0.6, dtype=torch.float64)
    loss(anchor, positive, negative).backward()
    # dL/dnegative = dL/dd_an * 2 (n - a): at most 2 * max_grad * |n - a| per coordinate.
    assert negative.grad.abs().max().item() <= 2 * loss.max_grad * 1e-6 * 1.01
    assert torch.isfinite(anchor.grad).all()


def test_lossless_sign_closer_positive_farther_negative():
    loss = LosslessTripletLoss(3)
    a = torch.tensor([[0.2, 0.2, 0.2]])
    p_far, p_near = torch.tensor([[0.8, 0.2, 0.2]]), torch.tensor([[0.3, 0.2, 0.2]])
    n_near, n_far = torch.tensor([[0.2, 0.5, 0.2]]), torch.tensor([[0.9, 0.9, 0.9]])
    assert loss(a, p_near, n_near) < loss(a, p_far, n_near)
    assert loss(a, p_near, n_far) < loss(a, p_near, n_near)


def test_triplet_margin_matches_loop_and_zero_when_satisfied():
    for margin in (0.1, 1.0, 2.5):
        got = TripletMarginLoss(margin)(*_tensors()).item()
        assert got == pytest.approx(_margin_loop(ANCHOR, POSITIVE, NEGATIVE, margin), abs=1e-6)
    loss = TripletMarginLoss(0.5)
    a = torch.zeros(1, 3)
    # d_ap = 0.01, d_an = 3 >= d_ap + margin -> zero, and zero gradient.
    p = torch.tensor([[0.1, 0.0, 0.0]], requires_grad=True)
    value = loss(a, p, torch.ones(1, 3))
    assert value.item() == 0.0
    value.backward()
    assert (p.grad == 0).all()
    # Violated: exact value d_ap - d_an + margin.
    d = loss.from_distances(torch.tensor([1.0]), torch.tensor([1.2]))
    assert d.item() == pytest.approx(0.3)


@pytest.mark.parametrize("margin", [0.0, -1.0, float("nan")])
def test_triplet_margin_bad_margin(margin):
    with pytest.raises(ConfigError, match="loss.margin"):
        TripletMarginLoss(margin)


@pytest.mark.parametrize("loss", [LosslessTripletLoss(3), TripletMarginLoss()])
def test_empty_batch_is_zero_with_grad(loss: TripletLoss):
    emb = torch.zeros(0, 3, requires_grad=True)
    value = loss(emb, emb, emb)
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    d = torch.zeros(0, requires_grad=True)
    assert loss.from_distances(d, d).item() == 0.0


def test_registry_and_make_loss():
    assert list(LOSSES) == ["lossless-triplet", "triplet", "contrastive", "hinge", "kl",
                            "angular-prototypical", "aam-softmax", "am-softmax"]
    for name, cls in LOSSES.items():
        assert cls.name == name and issubclass(cls, Loss)
        assert cls.kind in ("triplet", "pair", "class") and cls.head in HEADS
    # The whole loss section can be passed: unused keys and None values are dropped.
    section = {"beta": None, "eps": 1e-6, "margin": 0.3}
    lossless = make_loss("lossless-triplet", 6, **section)
    assert isinstance(lossless, LosslessTripletLoss)
    assert (lossless.embedding_dim, lossless.beta, lossless.eps) == (6, 6.0, 1e-6)
    margin = make_loss("triplet", 6, **section)
    assert isinstance(margin, TripletMarginLoss) and margin.margin == 0.3
    assert make_loss("triplet", 6, margin=None).margin == 1.0
    with pytest.raises(ConfigError, match="loss.beta"):
        make_loss("lossless-triplet", 6, beta=2.0)


def test_make_loss_unknown_name():
    with pytest.raises(ConfigError) as err:
        make_loss("foo", 8)
    assert str(err.value) == (
        "loss.name 'foo' is not a known loss; choose one of: lossless-triplet, triplet, "
        "contrastive, hinge, kl, angular-prototypical, aam-softmax, am-softmax"
    )


def test_pairwise_squared_distances_matches_loop_and_safe_gradient(monkeypatch):
    rng = np.random.default_rng(0)
    pts = rng.random((6, 4))
    pts[3] = pts[1]  # identical rows
    x = torch.tensor(pts, requires_grad=True)
    dist = pairwise_squared_distances(x)
    for i in range(6):
        for j in range(6):
            assert dist[i, j].item() == pytest.approx(_sqdist(pts[i], pts[j]), abs=1e-12)
    assert (dist.diagonal() == 0).all() and dist[1, 3].item() == 0.0
    dist.sum().backward()
    assert torch.isfinite(x.grad).all()
    # Expansion path (used for large inputs): still >= 0, symmetric, 0 diagonal, close.
    monkeypatch.setattr(base, "_DIRECT_PAIRWISE_MAX_ELEMENTS", 0)
    big = torch.rand(40, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    big[5] = big[7]
    big.requires_grad_(True)
    dbig = pairwise_squared_distances(big)
    exact = ((big[:, None, :] - big[None, :, :]) ** 2).sum(-1)
    assert (dbig >= 0).all() and (dbig.diagonal() == 0).all()
    assert torch.equal(dbig, dbig.T)
    assert torch.allclose(dbig, exact, atol=1e-12)
    dbig.sum().backward()
    assert torch.isfinite(big.grad).all()
