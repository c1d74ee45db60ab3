"""The pair and class losses: hand-computed values on tiny embeddings, the heads they
ask for, and training with each loss (every loss, several strategies) lowering it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.test_train import matrix
from trafficsiam.config import build_config
from trafficsiam.errors import ConfigError
from trafficsiam.losses import (
    LOSSES,
    AAMSoftmaxLoss,
    AMSoftmaxLoss,
    AngularPrototypicalLoss,
    ContrastiveLoss,
    HingePairLoss,
    KLPairLoss,
    make_loss,
)
from trafficsiam.model import SiameseMLP
from trafficsiam.train import build_model, train


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_contrastive_hand_computed():
    # d^2 = 0.25 same -> 0.25; d = 0.5 different -> (1 - 0.5)^2; d = 1 different -> 0
    x1 = t([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    x2 = t([[0.3, 0.4], [0.3, 0.4], [0.6, 0.8]])
    same = t([1, 0, 0])
    loss = ContrastiveLoss(margin=1.0)
    assert loss.per_pair(x1, x2, same).tolist() == pytest.approx([0.25, 0.25, 0.0])
    assert loss(x1, x2, same).item() == pytest.approx(0.5 / 3)


def test_contrastive_identical_negative_has_finite_gradient():
    x1 = torch.zeros(1, 3, requires_grad=True)
    x2 = torch.zeros(1, 3, requires_grad=True)
    value = ContrastiveLoss()(x1, x2, torch.zeros(1))
    value.backward()
    assert value.item() == pytest.approx(1.0, abs=1e-3)  # d floored at 1e-4
    assert torch.isfinite(x1.grad).all()


def test_hinge_hand_computed():
    # d = mean |x1 - x2|: 0.3 same -> 0.5 + 0.3; 0.3 different -> 0.5 - 0.3; 0.5 different -> 0
    x1 = t([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    x2 = t([[0.2, 0.4], [0.2, 0.4], [1.0, 0.0]])
    same = t([1, 0, 0])
    loss = HingePairLoss(margin=0.5)
    assert loss.per_pair(x1, x2, same).tolist() == pytest.approx([0.8, 0.2, 0.0])
    assert loss(x1, x2, same).item() == pytest.approx(1 / 3)


def test_kl_hand_computed():
    # N = 1: N(0.2, 1) and N(0.6, 4)
    x1 = t([[0.2, 0.0], [0.2, 0.0]])
    x2 = t([[0.6, math.log(4.0)], [0.6, math.log(4.0)]])
    sym = 0.5 * ((4 + 0.25 - 2) + 0.4 ** 2 * (1 + 0.25))  # 1.225
    s = math.log(1 + sym)
    prior = 0.5 * ((1 - 1 - 0) + (4 - 1 - math.log(4.0))) / 2
    loss = KLPairLoss(margin=2.0, regularisation=0.01)
    got = loss.per_pair(x1, x2, t([1, 0])).tolist()
    assert got == pytest.approx([s + 0.01 * prior, (2.0 - s) + 0.01 * prior])
    # identical Gaussians at unit variance: nothing to pay for a same-scenario pair
    same = t([[0.3, 0.0]])
    assert loss.per_pair(same, same, t([1])).item() == pytest.approx(0.0, abs=1e-12)


def test_angular_prototypical_hand_computed():
    emb = t([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    loss = AngularPrototypicalLoss(scale=10.0, bias=-5.0).double()
    # record 0: own prototype e1 (cos 0.6), class 1 prototype (0, 1) (cos 0)
    # record 1: own prototype e0 (cos 0.6), class 1 (cos 0.8)
    # records 2, 3: own prototype (0, 1) (cos 1), class 0 mean (0.8, 0.4) (cos 1/sqrt 5)
    want = (math.log1p(math.exp(-6.0)) + math.log1p(math.exp(2.0))
            + 2 * math.log1p(math.exp(10 * (1 / math.sqrt(5) - 1)))) / 4
    assert loss(emb, labels).item() == pytest.approx(want, rel=1e-9)
    # the scale and bias are learnable; the bias shifts every logit alike
    assert {n for n, _ in loss.named_parameters()} == {"w", "b"}
    with torch.no_grad():
        loss.b.fill_(3.0)
    assert loss(emb, labels).item() == pytest.approx(want, rel=1e-9)


def test_angular_prototypical_singleton_is_a_prototype_only():
    emb = t([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss = AngularPrototypicalLoss().double()
    # queries: records 0 and 1 (own cos 1, other cos 0): log(1 + e^-10) each
    assert loss(emb, torch.tensor([0, 0, 1])).item() == pytest.approx(math.log1p(math.exp(-10)))


def _margin_softmax_loop(emb, labels, weight, scale, target):
    total = 0.0
    for e, y in zip(emb, labels, strict=True):
        e = np.asarray(e) / np.linalg.norm(e)
        cos = [float(e @ (w / np.linalg.norm(w))) for w in np.asarray(weight)]
        logits = [scale * (target(c) if j == y else c) for j, c in enumerate(cos)]
        total += -logits[y] + math.log(sum(math.exp(v) for v in logits))
    return total / len(labels)


def _arcface(m):
    def target(c):
        if c > math.cos(math.pi - m):
            return math.cos(math.acos(c) + m)
        return c - math.sin(math.pi - m) * m
    return target


@pytest.mark.parametrize("cls, target", [
    (AAMSoftmaxLoss, _arcface(0.2)),
    (AMSoftmaxLoss, lambda c: c - 0.2),
])
def test_margin_softmax_hand_computed(cls, target):
    # [-1, 0] with class 0 at (1, 0): theta + m passes pi, the ArcFace fallback applies
    emb = [[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0], [0.3, -0.2]]
    labels = [0, 0, 0, 1]
    weight = [[2.0, 0.0], [0.0, 1.0]]
    loss = cls(n_classes=2, embedding_dim=2, scale=16.0, margin=0.2).double()
    with torch.no_grad():
        loss.weight.copy_(t(weight))
    got = loss(t(emb), torch.tensor(labels)).item()
    assert got == pytest.approx(_margin_softmax_loop(emb, labels, weight, 16.0, target), rel=1e-9)
    # first record, by hand: log(1 + exp(-16 target(1)))
    first = loss(t(emb[:1]), torch.tensor([0])).item()
    assert first == pytest.approx(math.log1p(math.exp(-16 * target(1.0))), rel=1e-9)


def test_margin_softmax_needs_two_classes_and_positive_scale():
    with pytest.raises(ConfigError, match="at least 2 scenarios"):
        AAMSoftmaxLoss(n_classes=1, embedding_dim=4)
    with pytest.raises(ConfigError, match="loss.scale"):
        AMSoftmaxLoss(n_classes=3, embedding_dim=4, scale=0.0)
    with pytest.raises(ConfigError, match="loss.margin"):
        ContrastiveLoss(margin=-1.0)


def test_make_loss_passes_classes_and_section_defaults():
    section = {"beta": None, "eps": 1e-8, "margin": None, "scale": None}
    aam = make_loss("aam-softmax", 8, n_classes=5, **section)
    assert aam.weight.shape == (5, 8) and (aam.scale, aam.margin) == (16.0, 0.2)
    assert make_loss("hinge", 8, **section).margin == 0.5
    assert make_loss("contrastive", 8, margin=2.0).margin == 2.0
    assert make_loss("angular-prototypical", 8, scale=4.0).w.item() == 4.0
    with pytest.raises(ValueError, match="n_classes"):
        make_loss("am-softmax", 8)


@pytest.mark.parametrize("empty_loss", [ContrastiveLoss(), KLPairLoss()])
def test_pair_loss_empty_batch_is_zero_with_grad(empty_loss):
    x = torch.zeros(0, 4, requires_grad=True)
    value = empty_loss(x, x, torch.zeros(0))
    assert value.item() == 0.0 and value.requires_grad


def test_heads_follow_the_loss():
    cfg = build_config({"loss": {"name": "aam-softmax"}, "model": {"hidden": [8]}})
    model = build_model(5, cfg)
    out = model(torch.randn(10, 5))
    assert model.head == "l2"
    torch.testing.assert_close(out.norm(dim=1), torch.ones(10))
    kl = build_model(5, build_config({"loss": {"name": "kl"}, "model": {"hidden": [8]}}))
    assert kl.head == "gaussian" and kl(torch.randn(3, 5)).shape == (3, 8)
    both = kl.forward_train(torch.randn(3, 5))
    assert both.shape == (3, 16) and (both[:, :8] >= 0).all() and (both[:, 8:].abs() <= 6).all()
    lossless = build_model(5, build_config({"model": {"hidden": [8]}}))
    # the default model's layers (and so its weight names) are those it always had
    assert isinstance(lossless.net[-1], torch.nn.Sigmoid) and not hasattr(lossless, "logvar")
    assert list(lossless.state_dict()) == list(SiameseMLP(5, (8,)).state_dict())


def test_unknown_loss_name_is_refused_at_config_load():
    with pytest.raises(ConfigError, match="loss.name 'arcface' is not a known loss"):
        build_config({"loss": {"name": "arcface"}})


# Each loss with the strategies it trains with (every mining path is covered: triplets,
# pairs and class batches). Not listed: `triplet` and `hinge` with batch-hard, which
# stall at the margin on this data (every embedding collapses to one point, so every
# hardest triplet or pair costs exactly the margin; BENCHMARKS.md section 4).
TRAINS_WITH = [
    ("lossless-triplet", "batch-hard"), ("triplet", "random"), ("triplet", "semi-hard"),
    ("contrastive", "random"), ("contrastive", "batch-hard"), ("contrastive", "semi-hard"),
    ("hinge", "random"), ("kl", "random"), ("kl", "batch-hard"),
    ("angular-prototypical", "batch-hard"), ("aam-softmax", "batch-hard"),
    ("am-softmax", "random"),
]


def test_every_loss_is_trained_in_a_test():
    assert {name for name, _ in TRAINS_WITH} == set(LOSSES)


@pytest.mark.parametrize("name, strategy", TRAINS_WITH)
def test_training_with_each_loss_reduces_it(synth_small, name, strategy):
    x, codes = matrix(synth_small)
    cfg = build_config({
        "train": {"epochs": 4, "steps_per_epoch": 20, "patience": 10},
        "triplets": {"strategy": strategy}, "loss": {"name": name},
        "model": {"hidden": [64, 32]},
    })
    result = train(x, codes, cfg, quiet=True)
    hist = result.history
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in hist)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"], hist
    assert min(h["val_loss"] for h in hist[1:]) < hist[0]["val_loss"], hist
    assert max(h["val_triplet_accuracy"] for h in hist) > 0.85


def test_frames_record_each_epoch_without_changing_training(synth_small):
    x, codes = matrix(synth_small)
    cfg = build_config({"train": {"epochs": 3, "steps_per_epoch": 10, "patience": 10},
                        "model": {"hidden": [16]}})
    plain = train(x, codes, cfg, quiet=True)
    rows = np.arange(0, 3000, 100)
    recorded = train(x, codes, cfg, quiet=True, frame_rows=rows)
    frames = recorded.extra["frames"]
    assert frames.shape == (4, len(rows), 8)
    for k, v in plain.model.state_dict().items():
        assert torch.equal(v, recorded.model.state_dict()[k])
    assert not np.allclose(frames[0], frames[-1])


@pytest.mark.parametrize("name, head", [("aam-softmax", "l2"), ("kl", "gaussian")])
def test_fit_saves_and_loads_the_head_of_the_loss(tmp_path, synth_small, name, head):
    from trafficsiam import api

    data = tmp_path / "d.parquet"
    synth_small.to_parquet(data)
    cfg = build_config({
        "data": {"ignore": ["id", "timestamp"]}, "loss": {"name": name},
        "train": {"epochs": 2, "steps_per_epoch": 10}, "cluster": {"max_points": 1000},
    })
    result = api.fit(data, tmp_path / "m", cfg, quiet=True)
    assert result.manifest["model"]["head"] == head
    art = api.load(tmp_path / "m")
    assert art.model.head == head
    emb = art.embed(synth_small.head(50))
    assert emb.shape == (50, 8)
    if head == "l2":
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    else:  # the mean: in [0,1]^N; the log-variance layer was saved and loaded too
        assert (emb >= 0).all() and (emb <= 1).all()
        assert "logvar.weight" in art.model.state_dict()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_has_one_call_signature(name):
    """`compute(out, labels, indices, distances)` is the kind's own formula: what the
    training loop calls for every loss, drawn or mined triplets alike."""
    torch.manual_seed(0)
    loss = make_loss(name, 4, n_classes=3)
    width = 8 if loss.head == "gaussian" else 4
    out = torch.rand(9, width)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    a, p, n = torch.tensor([0, 3, 6]), torch.tensor([1, 4, 7]), torch.tensor([3, 6, 0])
    got = loss.compute(out, labels, (a, p, n) if loss.takes_indices else None)
    if loss.kind == "triplet":
        want = loss(out[a], out[p], out[n])
        emb = out[:, :4]
        dist = ((emb[:, None] - emb[None]) ** 2).sum(-1)
        assert torch.allclose(loss.compute(out, labels, (a, p, n), dist), want)
        assert loss.terms(9, (a, p, n)) == 3
    elif loss.kind == "pair":
        same = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
        want = loss(out[torch.cat([a, a])], out[torch.cat([p, n])], same)
        assert loss.terms(9, (a, p, n)) == 6
    else:
        want = loss(out, labels)
        assert loss.terms(9, None) == 9
    assert torch.equal(got, want)
