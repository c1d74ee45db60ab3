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


def test_ctrl_c_during_the_deterministic_switch_stays_a_ctrl_c(synth_small, monkeypatch):
    """The switch imports torch._inductor lazily on its first use; a Ctrl-C in that
    import used to leave it half done, and the `finally:` that restores the mode then
    raised AttributeError (exit 1 instead of 130). The first switch happens before the
    `try`, so the KeyboardInterrupt is what comes out."""
    x, codes = matrix(synth_small)
    calls = []

    def interrupted_import(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise KeyboardInterrupt
        raise AttributeError("partially initialized module 'torch._dynamo'")

    monkeypatch.setattr(torch, "use_deterministic_algorithms", interrupted_import)
    with pytest.raises(KeyboardInterrupt):
        train(x, codes, cfg(epochs=1), quiet=True)
    assert len(calls) == 1


def test_blank_inputs_zeroes_about_the_rate_and_keeps_the_rest():
    from trafficsiam.train import blank_inputs

    x = torch.rand(4000, 50) + 0.5  # no zeros of its own
    assert blank_inputs(x, 0.0) is x
    torch.manual_seed(0)
    out = blank_inputs(x, 0.25)
    zeroed = out == 0
    assert abs(float(zeroed.float().mean()) - 0.25) < 0.01
    assert torch.equal(out[~zeroed], x[~zeroed])  # unscaled
    # a different draw per call: each step blanks other inputs
    assert not torch.equal(blank_inputs(x, 0.25) == 0, zeroed)


@pytest.mark.parametrize("strategy", ["random", "batch-hard"])
def test_input_dropout_trains_reproducibly_and_differs(synth_small, strategy):
    """train.input_dropout: the same seed gives the same weights; the augmentation changes
    them (it is applied), and the embedding still separates the scenarios."""
    x, codes = matrix(synth_small)

    def config(rate: float):
        return build_config({
            "train": {"seed": 3, "epochs": 4, "steps_per_epoch": 20, "patience": 10,
                      "input_dropout": rate},
            "model": {"hidden": [32, 16]}, "triplets": {"strategy": strategy},
        })

    a = train(x, codes, config(0.25), quiet=True)
    b = train(x, codes, config(0.25), quiet=True)
    plain = train(x, codes, config(0.0), quiet=True)
    sa, sb, sp = (r.model.state_dict() for r in (a, b, plain))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sp[k]) for k in sa)
    assert a.history[-1]["val_triplet_accuracy"] > 0.8  # chance: 0.5


def test_validation_split_is_the_split_train_makes(synth_small):
    """fit decides on the held-out records before training (`validation_split`): they must
    be the ones `train` then holds out and calibrates on."""
    from trafficsiam.train import validation_split

    x, codes = matrix(synth_small)
    for seed in (0, 5):
        cfg = build_config({"train": {"seed": seed, "epochs": 1, "steps_per_epoch": 1},
                            "model": {"hidden": [16]}})
        result = train(x, codes, cfg, quiet=True)
        rows, held = validation_split(codes, cfg)
        assert np.array_equal(rows, result.train_idx) and np.array_equal(held, result.val_idx)
    assert not np.array_equal(validation_split(codes, build_config({"train": {"seed": 1}}))[1],
                              held)
