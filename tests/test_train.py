import numpy as np
import pytest
import torch

from trafficsiam.config import build_config
from trafficsiam.normalise import Normaliser
from trafficsiam.train import split_validation, train
from trafficsiam.validate import FeatureSchema


def matrix(frame):
    schema = FeatureSchema(
        numeric=("duration_ms", "bytes_in", "bytes_out", "packets_in", "packets_out",
                 "latency_ms", "jitter_ms", "retransmissions", "error_rate"),
        categorical=("protocol", "service", "tcp_state"),
    )
    norm = Normaliser.fit(frame, schema, build_config().normalise)
    x, _ = norm.transform(frame)
    codes = np.unique(frame["scenario"].to_numpy(str), return_inverse=True)[1]
    return x, codes


def cfg(**train):
    return build_config({
        "train": {"epochs": 3, "steps_per_epoch": 15, "patience": 10, **train},
        "model": {"hidden": [32, 16]},
    })


@pytest.mark.parametrize("strategy", ["random", "semi-hard", "batch-hard"])
def test_each_strategy_learns(synth_small, strategy):
    x, codes = matrix(synth_small)
    config = build_config({
        "train": {"epochs": 4, "steps_per_epoch": 20, "patience": 10},
        "triplets": {"strategy": strategy},
    })
    result = train(x, codes, config, quiet=True)
    hist = result.history
    assert len(hist) == 4
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    assert hist[-1]["val_triplet_accuracy"] > 0.85
    assert result.triplets_seen == sum(h["triplets"] for h in hist) > 0


def test_same_seed_same_weights_bit_for_bit(synth_small):
    x, codes = matrix(synth_small)
    a = train(x, codes, cfg(seed=3), quiet=True).model.state_dict()
    b = train(x, codes, cfg(seed=3), quiet=True).model.state_dict()
    c = train(x, codes, cfg(seed=4), quiet=True).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_identical_records_across_scenarios_do_not_blow_up(synth_small):
    x, codes = matrix(synth_small)
    # 30 error records become exact copies of good records: d(a, n) = 0 at start.
    good = np.flatnonzero(codes == codes.max())[:30]
    bad = np.flatnonzero(codes != codes.max())[:30]
    x[bad] = x[good]
    for strategy in ("random", "batch-hard"):
        config = build_config({
            "train": {"epochs": 2, "steps_per_epoch": 20, "patience": 10},
            "triplets": {"strategy": strategy},
        })
        result = train(x, codes, config, quiet=True)
        assert all(np.isfinite(h["train_loss"]) for h in result.history)
        assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_early_stopping_restores_best_epoch(synth_small):
    x, codes = matrix(synth_small)
    # A huge learning rate makes validation loss jump around, so patience 1 stops early.
    result = train(x, codes, cfg(epochs=30, patience=1, learning_rate=0.5), quiet=True)
    assert result.stopped_early
    assert len(result.history) < 30
    best = min(h["val_loss"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_loss"] == best


def test_validation_split_is_stratified_and_keeps_tiny_classes_in_training():
    codes = np.array([0] * 100 + [1] * 20 + [2] * 3)
    tr, va = split_validation(codes, 0.1, np.random.default_rng(0))
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(codes)
    assert np.bincount(codes[va], minlength=3).tolist() == [10, 2, 0]


def test_train_leaves_torch_deterministic_mode_as_it_found_it(synth_small):
    x, codes = matrix(synth_small)
    torch.use_deterministic_algorithms(False)
    train(x, codes, cfg(epochs=1), quiet=True)
    assert not torch.are_deterministic_algorithms_enabled()
