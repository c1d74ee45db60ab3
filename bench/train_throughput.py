"""Training throughput: the product's loop (`trafficsiam.train.train`) against a bare loop.

Both loops train the same `SiameseMLP` with the same loss (`build_loss`), the same Adam
settings and the same batch composition on the same normalised matrix, in one process:

* strategy `random`: class-balanced random triplets (`random_triplets`, drawn once per
  epoch), `triplets.batch_size` triplets per step;
* strategies `semi-hard` / `batch-hard`: class-balanced P x K batches (`BalancedBatches`)
  mined online with the same rule (farthest positive / closest valid negative, or closest
  semi-hard negative), duplicate-group negatives excluded.

What the product does is read from the product itself (`product_batching`: `train` is run
with probes on `BalancedBatches`, `random_triplets` and `torch.optim.Adam`, then stopped
before its first step): P and K, records per batch, steps per epoch at its defaults and
Adam's keyword arguments. The bare loop follows them, so it keeps up with train.py changes.

The bare loop is what one would write by hand: index the batch, forward, distances, mine,
loss, backward, Adam step. It has no validation pass, gradient clipping, loss bookkeeping,
early-stopping state copies or deterministic-algorithms mode, and draws an epoch's
batches in one go.

Throughput is triplets per second of the training loop, excluding the product's one-off
setup (split, duplicate groups, validation triplets; reported separately). The product's
loop is timed from the moment `train` creates its progress bar to its return, so its
per-epoch validation pass counts; steps per epoch are the product's default, so that pass
is amortised as in real use. Time is process CPU time (on a shared machine far less noisy
than wall time; wall-time ratios are shown too), with one torch thread by default
(`--threads`); with more threads the wall clock is used, since idle OpenMP threads spin and
bill CPU time. Product and bare runs alternate in ABBA order `--repeats` times; the ratio
is the median of the paired ratios.

`--ablation` times the product's per-step features added to the bare step one at a time,
all variants interleaved step by step, plus (mined strategies) an alternative bare step that
mines on no-grad Gram-matrix distances and takes the loss from row-wise distances only.
The machine's ceiling: GFLOP/s of a torch fp32 matmul of the model's first-layer shape and
of a large square, against the model FLOPs the loop performs.

    .venv/bin/python bench/train_throughput.py            # synth 50k rows + NSL-KDD KDDTrain+
    .venv/bin/python bench/train_throughput.py --quick    # smoke run (train_throughput_quick.json)
    .venv/bin/python bench/train_throughput.py --ablation --profile random batch-hard
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import math
import os
import pstats
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import _common as common
import numpy as np
import torch

import trafficsiam.train as product_train
from trafficsiam import synth
from trafficsiam.config import Config, build_config
from trafficsiam.losses.base import pairwise_squared_distances
from trafficsiam.train import (
    build_loss,
    build_model,
        split_validation,
    train,
)
from trafficsiam.triplets import BalancedBatches, Triplets, duplicate_groups, random_triplets

STRATEGIES = ("random", "semi-hard", "batch-hard")

# Step variants of --ablation: each adds one product feature to the previous one.
VARIANTS = (
    "bare step",
    "+ deterministic mode (seed_everything)",
    "+ product batch assembly and mining (_triplet_loss / _mined_loss)",
    "+ gradient clipping (_step)",
    "+ per-step sampling and loss bookkeeping (= the product's step)",
)
# Extra variant for the mined strategies: the bare step with a cheaper distance path.
ALTERNATIVE = ("alternative bare step: mine on no-grad Gram-matrix distances, loss on the "
               "row-wise distances of the mined triplets only")


@dataclass
class Dataset:
    name: str
    x: np.ndarray
    codes: np.ndarray
    classes: int


# ------------------------------------------------------------------ data


def load_datasets(args: argparse.Namespace) -> list[Dataset]:
    out = []
    frame = synth.generate(rows=args.synth_rows, seed=0)
    x, codes, names = common.prepare_matrix(frame, common.synth_data_config(), "synth")
    out.append(Dataset(f"synth {args.synth_rows:,} rows", x, codes, len(names)))
    if not args.no_nsl_kdd:
        path = common.nsl_kdd("KDDTrain+.parquet")
        if path is not None:
            import pandas as pd

            frame = pd.read_parquet(path)
            x, codes, names = common.prepare_matrix(
                frame, common.nsl_kdd_data_config(args.nsl_label), str(path)
            )
            out.append(Dataset(f"NSL-KDD KDDTrain+ ({args.nsl_label})", x, codes, len(names)))
    return out


def make_config(strategy: str, epochs: int, steps: int | None, seed: int = 0) -> Config:
    return build_config({
        "triplets": {"strategy": strategy},
        "train": {
            "epochs": epochs,
            "steps_per_epoch": steps,
            "patience": 10**9,
            "seed": seed,
            "device": "cpu",
        },
    })


class _Probed(Exception):
    """Raised by the probes below to stop `train` once they have seen what they need."""


def product_batching(ds: Dataset, strategy: str) -> dict[str, Any]:
    """How the product's `train` batches this data at its defaults, read from the product
    itself (so the bare loop follows it even when train.py changes): records per batch,
    for mined strategies the P and K it gives `BalancedBatches`, steps per epoch, and the
    keyword arguments of its Adam optimiser. `train` is stopped before its first step."""
    seen: dict[str, Any] = {}
    real_adam = torch.optim.Adam

    def probe_adam(params: Any, **kwargs: Any) -> torch.optim.Optimizer:
        seen["adam"] = dict(kwargs)
        return real_adam(params, **kwargs)

    real_sampler, real_random = product_train.BalancedBatches, product_train.random_triplets
    calls = {"random": 0}

    class ProbeBatches(real_sampler):  # type: ignore[misc, valid-type]
        def __init__(self, labels: Any, classes_per_batch: int, samples_per_class: int,
                     rng: Any, n_batches: int | None = None) -> None:
            super().__init__(labels, classes_per_batch, samples_per_class, rng, n_batches)
            seen.update(classes_per_batch=classes_per_batch,
                        samples_per_class=samples_per_class, records=self.batch_size)

        def batches(self, n_batches: int) -> Any:
            seen["steps"] = n_batches
            raise _Probed

    def probe_random(labels: Any, n: int, rng: Any, groups: Any = None) -> Any:
        calls["random"] += 1
        if calls["random"] == 2:  # the first call draws the validation triplets
            cfg = make_config(strategy, 1, None)
            seen.update(records=cfg.triplets.batch_size, steps=n // cfg.triplets.batch_size)
            raise _Probed
        return real_random(labels, n, rng, groups)

    product_train.BalancedBatches = ProbeBatches  # type: ignore[misc]
    product_train.random_triplets = probe_random  # type: ignore[assignment]
    torch.optim.Adam = probe_adam  # type: ignore[misc, assignment]
    try:
        train(ds.x, ds.codes, make_config(strategy, 1, None), quiet=True)
    except _Probed:
        pass
    finally:
        product_train.BalancedBatches = real_sampler  # type: ignore[misc]
        product_train.random_triplets = real_random
        torch.optim.Adam = real_adam  # type: ignore[misc]
        torch.use_deterministic_algorithms(False)
    seen.setdefault("adam", {})
    if "steps" not in seen:
        raise RuntimeError(f"could not read the product's batching for {strategy}")
    return seen


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


# ------------------------------------------------------------------ the product loop


def product_run(ds: Dataset, cfg: Config) -> dict[str, Any]:
    """`trafficsiam.train.train`, with the loop timed from the creation of its progress
    bar (the last thing before the first epoch) to its return."""
    marks: dict[str, tuple[float, float]] = {}
    real_tqdm = product_train.tqdm

    def hooked_tqdm(*args: Any, **kwargs: Any) -> Any:
        marks["loop"] = _clocks()
        return real_tqdm(*args, **kwargs)

    product_train.tqdm = hooked_tqdm  # type: ignore[assignment]
    try:
        load = os.getloadavg()[0]
        w0, c0 = _clocks()
        result = train(ds.x, ds.codes, cfg, quiet=True)
        w1, c1 = _clocks()
    finally:
        product_train.tqdm = real_tqdm  # type: ignore[assignment]
    wl, cl = marks["loop"]
    return {
        "triplets": int(result.triplets_seen),
        "steps": cfg.train.epochs * (cfg.train.steps_per_epoch or 0),
        "loop_wall_s": w1 - wl,
        "loop_cpu_s": c1 - cl,
        "setup_wall_s": wl - w0,
        "setup_cpu_s": cl - c0,
        "epoch_seconds_sum": sum(h["seconds"] for h in result.history),
        "epochs_run": len(result.history),
        "load1": load,
    }


# ------------------------------------------------------------------ the bare loop


def _bare_mine(
    d: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, strategy: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The selection rules of `trafficsiam.triplets.mine` (no margin), written inline."""
    b = d.shape[0]
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(b, dtype=torch.bool)
    neg = ~same & (groups[:, None] != groups[None, :])
    if strategy == "batch-hard":
        anchors = torch.nonzero(pos.any(1) & neg.any(1)).reshape(-1)
        da = d[anchors]
        p = da.masked_fill(~pos[anchors], -math.inf).argmax(1)
        n = da.masked_fill(~neg[anchors], math.inf).argmin(1)
        return anchors, p, n
    a, p = torch.nonzero(pos & neg.any(1, keepdim=True), as_tuple=True)
    rows = d[a]
    valid = neg[a]
    d_ap = d[a, p].unsqueeze(1)
    semi = valid & (rows > d_ap)
    semi_n = rows.masked_fill(~semi, math.inf).argmin(1)
    hard_n = rows.masked_fill(~valid, math.inf).argmin(1)
    return a, p, torch.where(semi.any(1), semi_n, hard_n)


def bare_run(ds: Dataset, cfg: Config, batching: dict[str, Any]) -> dict[str, Any]:
    """A hand-written loop on the same model, loss, optimiser and batch composition."""
    torch.use_deterministic_algorithms(False)
    torch.manual_seed(cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed)
    tc, trip = cfg.train, cfg.triplets
    # The same training rows as the product (its split); prepared outside the timed loop.
    train_idx, _ = split_validation(ds.codes, tc.validation_fraction, rng)
    groups = duplicate_groups(ds.x)
    xt = torch.from_numpy(ds.x)
    codes_t = torch.from_numpy(ds.codes.astype(np.int64))
    groups_t = torch.from_numpy(groups)
    model = build_model(ds.x.shape[1], cfg)
    loss_fn = build_loss(cfg)
    opt = torch.optim.Adam(model.parameters(), **batching["adam"])  # the product's settings
    steps = int(tc.steps_per_epoch or 1)
    sampler = None
    if trip.strategy != "random":
        sampler = BalancedBatches(
            ds.codes[train_idx], batching["classes_per_batch"], batching["samples_per_class"],
            rng,
        )

    def update(loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    triplets = 0
    load = os.getloadavg()[0]
    w0, c0 = _clocks()
    for _ in range(tc.epochs):
        if sampler is None:
            bs = trip.batch_size
            t = random_triplets(ds.codes[train_idx], steps * bs, rng, groups[train_idx])
            tri = train_idx[np.stack([t.anchor, t.positive, t.negative])]
            trip_idx = torch.from_numpy(tri.reshape(3, steps, bs))
            for s in range(steps):
                emb = model(xt[trip_idx[:, s].reshape(-1)])
                loss = loss_fn(emb[:bs], emb[bs : 2 * bs], emb[2 * bs :])
                update(loss)
                triplets += bs
        else:
            batches = torch.from_numpy(train_idx[np.stack(list(sampler.batches(steps)))])
            for s in range(steps):
                idx = batches[s]
                emb = model(xt[idx])
                dist = pairwise_squared_distances(emb)
                a, p, n = _bare_mine(dist.detach(), codes_t[idx], groups_t[idx], trip.strategy)
                loss = loss_fn.from_distances(dist[a, p], dist[a, n])
                update(loss)
                triplets += len(a)
    w1, c1 = _clocks()
    torch.use_deterministic_algorithms(False)
    return {
        "triplets": triplets,
        "steps": tc.epochs * steps,
        "loop_wall_s": w1 - w0,
        "loop_cpu_s": c1 - c0,
        "load1": load,
    }


# ------------------------------------------------------------------ ablation


def interleaved_ablation(
    ds: Dataset, strategy: str, steps: int, batching: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per-step cost of the product's features, added one by one to the bare step.

    The variants run interleaved step by step (rotating order), each with its own model
    and optimiser, so a change of machine load hits all of them alike. Per-epoch extras
    (validation pass, best-state copy) are timed separately and amortised over an epoch."""
    cfg = make_config(strategy, 1, steps)
    tc, trip = cfg.train, cfg.triplets
    rng = np.random.default_rng(0)
    cpu = torch.device("cpu")
    train_idx, val_idx = split_validation(ds.codes, tc.validation_fraction, rng)
    groups = duplicate_groups(ds.x)
    xt = torch.from_numpy(ds.x)
    codes_t = torch.from_numpy(ds.codes.astype(np.int64))
    groups_t = torch.from_numpy(groups)
    loss_fn = build_loss(cfg)
    margin = cfg.loss.margin if cfg.loss.name == "triplet" else None
    models, opts = [], []
    n_var = len(VARIANTS) + (0 if strategy == "random" else 1)
    last = len(VARIANTS) - 1  # the product's step
    for _ in range(n_var):
        torch.manual_seed(0)
        model = build_model(ds.x.shape[1], cfg)
        model.train()
        models.append(model)
        opts.append(torch.optim.Adam(model.parameters(), **batching["adam"]))
    totals = [torch.zeros(()) for _ in range(n_var)]

    if strategy == "random":
        bs = trip.batch_size
        start = time.perf_counter()
        t = random_triplets(ds.codes[train_idx], steps * bs, rng, groups[train_idx])
        sample_ms = (time.perf_counter() - start) / steps * 1e3
        tri = train_idx[np.stack([t.anchor, t.positive, t.negative])]
        trip_idx = torch.from_numpy(tri.reshape(3, steps, bs))

        def loss_of(v: int, s: int) -> tuple[torch.Tensor, int]:
            if v >= 2:
                sl = slice(s * bs, (s + 1) * bs)
                part = Triplets(tri[0, sl], tri[1, sl], tri[2, sl])
                return product_train._triplet_loss(models[v], loss_fn, xt, part, cpu), bs
            emb = models[v](xt[trip_idx[:, s].reshape(-1)])
            return loss_fn(emb[:bs], emb[bs : 2 * bs], emb[2 * bs :]), bs
    else:
        sampler = BalancedBatches(
            ds.codes[train_idx], batching["classes_per_batch"], batching["samples_per_class"],
            rng,
        )
        start = time.perf_counter()
        drawn = [train_idx[b] for b in sampler.batches(steps)]
        sample_ms = (time.perf_counter() - start) / steps * 1e3
        batches = torch.from_numpy(np.stack(drawn))

        def loss_of(v: int, s: int) -> tuple[torch.Tensor, int]:
            if 4 <= v <= last:
                batch = train_idx[sampler._one_batch()]  # the product draws per step
            else:
                batch = drawn[s]
            if 2 <= v <= last:
                return product_train._mined_loss(
                    models[v], loss_fn, xt, codes_t, groups_t, batch, strategy, margin, cpu
                )
            idx = batches[s]
            emb = models[v](xt[idx])
            if v > last:  # ALTERNATIVE
                with torch.no_grad():
                    sq = emb.pow(2).sum(1)
                    gram = (sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T).clamp_min_(0.0)
                a, p, n = _bare_mine(gram, codes_t[idx], groups_t[idx], strategy)
                return loss_fn(emb[a], emb[p], emb[n]), len(a)
            dist = pairwise_squared_distances(emb)
            a, p, n = _bare_mine(dist.detach(), codes_t[idx], groups_t[idx], strategy)
            return loss_fn.from_distances(dist[a, p], dist[a, n]), len(a)

    def one_step(v: int, s: int) -> None:
        loss, n = loss_of(v, s)
        if 3 <= v <= last:
            product_train._step(opts[v], models[v], loss)
        else:
            opts[v].zero_grad(set_to_none=True)
            loss.backward()
            opts[v].step()
        if 4 <= v <= last:
            totals[v] += loss.detach() * n

    times = np.zeros((n_var, steps))
    for s in range(steps):
        for j in range(n_var):
            v = (s + j) % n_var
            torch.use_deterministic_algorithms(1 <= v <= last, warn_only=True)
            t0 = time.perf_counter()
            one_step(v, s)
            times[v, s] = time.perf_counter() - t0
    torch.use_deterministic_algorithms(False)

    # Per-epoch extras of the product: the validation pass and the best-state copy.
    val_pool = val_idx
    vt = random_triplets(ds.codes[val_pool], product_train.VALIDATION_TRIPLETS, rng,
                         groups[val_pool])
    val_t = Triplets(val_pool[vt.anchor], val_pool[vt.positive], val_pool[vt.negative])
    extra = []
    for _ in range(5):
        t0 = time.perf_counter()
        product_train._validate(models[last], loss_fn, xt, val_t, cpu)
        copy.deepcopy(models[last].state_dict())
        extra.append(time.perf_counter() - t0)
    per_epoch_ms = float(np.median(extra)) * 1e3
    default_steps = batching["steps"]

    def trimmed_ms(row: np.ndarray) -> float:
        """Mean of the fastest 90% of steps: drops the steps preempted by other work."""
        kept = np.sort(row)[: max(1, int(0.9 * len(row)))]
        return float(kept.mean()) * 1e3

    base = trimmed_ms(times[0])
    rows = []
    for v, name in enumerate(VARIANTS):
        ms = trimmed_ms(times[v])
        rows.append({"data": ds.name, "strategy": strategy, "variant": name,
                     "ms/step": ms, "+ms vs previous": ms - (trimmed_ms(times[v - 1]) if v
                                                              else ms),
                     "bare/this": base / ms})
    product_ms = trimmed_ms(times[last]) + per_epoch_ms / default_steps
    rows.append({"data": ds.name, "strategy": strategy,
                 "variant": f"+ validation and state copy per epoch ({per_epoch_ms:.1f} ms "
                            f"/ {default_steps} steps) (= the product)",
                 "ms/step": product_ms, "+ms vs previous": per_epoch_ms / default_steps,
                 "bare/this": base / product_ms})
    if n_var > len(VARIANTS):
        ms = trimmed_ms(times[len(VARIANTS)])
        rows.append({"data": ds.name, "strategy": strategy, "variant": ALTERNATIVE,
                     "ms/step": ms, "+ms vs previous": ms - base, "bare/this": base / ms})
    rows.append({"data": ds.name, "strategy": strategy,
                 "variant": "(batch sampling, in every variant)",
                 "ms/step": sample_ms, "+ms vs previous": float("nan"),
                 "bare/this": float("nan")})
    return rows


# ------------------------------------------------------------------ ceiling


def matmul_gflops(m: int, k: int, n: int, min_seconds: float = 0.5, repeats: int = 3) -> float:
    """Best of `repeats` timings of fp32 torch.mm [m,k]@[k,n], in GFLOP/s."""
    a = torch.randn(m, k)
    b = torch.randn(k, n)
    out = torch.empty(m, n)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(repeats):
        reps, elapsed = 0, 0.0
        start = time.perf_counter()
        while elapsed < min_seconds:
            torch.mm(a, b, out=out)
            reps += 1
            elapsed = time.perf_counter() - start
        best = max(best, 2.0 * m * k * n * reps / elapsed / 1e9)
    return best


def model_flops(in_features: int, cfg: Config) -> dict[str, float]:
    """fp32 FLOPs (a multiply-add = 2) of the MLP's matmuls per record: forward, and
    forward + backward (weight gradients of every layer, input gradients of every layer
    but the first). Activations, the loss and the optimiser are left out (O(width))."""
    widths = [in_features, *cfg.model.hidden, cfg.model.embedding_dim]
    layers = list(zip(widths[:-1], widths[1:], strict=True))
    fwd = sum(2.0 * i * o for i, o in layers)
    bwd = fwd + sum(2.0 * i * o for i, o in layers[1:])
    return {"forward": fwd, "train": fwd + bwd}


def records_per_triplet(strategy: str, batching: dict[str, Any]) -> float:
    """Records embedded per triplet: the model's work is per record, and mined triplets
    share the records of their batch."""
    if strategy == "random":
        return 3.0  # anchor, positive and negative are embedded separately
    if strategy == "batch-hard":
        return 1.0  # one triplet per anchor; every record of a P x K batch is an anchor
    return 1.0 / (batching["samples_per_class"] - 1)  # semi-hard: one per (a, p) pair


# ------------------------------------------------------------------ profile


def profile_product(ds: Dataset, strategy: str, steps: int, top: int) -> str:
    cfg = make_config(strategy, 1, steps)
    prof = cProfile.Profile()
    prof.enable()
    train(ds.x, ds.codes, cfg, quiet=True)
    prof.disable()
    torch.use_deterministic_algorithms(False)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    text = buf.getvalue().strip()
    return text[text.find("ncalls") - 3 :] if "ncalls" in text else text


# ------------------------------------------------------------------ main


def _summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median throughput and ms/step on process CPU time with one torch thread, on wall
    time with more (idle OpenMP threads spin and bill CPU time); best wall throughput."""
    key = "loop_cpu_s" if torch.get_num_threads() == 1 else "loop_wall_s"
    return {
        "cpu_tps": statistics.median(r["triplets"] / r[key] for r in runs),
        "wall_tps": max(r["triplets"] / r["loop_wall_s"] for r in runs),
        "cpu_ms_step": statistics.median(r[key] / r["steps"] * 1e3 for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synth-rows", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None,
                    help="optimiser steps per epoch (default: the product's default, "
                         "training rows per nominal batch)")
    ap.add_argument("--repeats", type=int, default=6,
                    help="product/bare pairs, run in ABBA order")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads for every run (default 1: robust on a "
                         "shared machine; 0 = torch's default)")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--nsl-label", default="attack", choices=("attack", "category"))
    ap.add_argument("--no-nsl-kdd", action="store_true", help="synthetic data only")
    ap.add_argument("--ablation", action="store_true",
                    help="also time the product's per-step features one by one, interleaved")
    ap.add_argument("--ablation-steps", type=int, default=400)
    ap.add_argument("--profile", nargs="*", choices=STRATEGIES, default=None,
                    help="also cProfile the product loop on the first data set for these "
                         "strategies (all when given without a value)")
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    ap.add_argument("--json-name", default="train_throughput",
                    help="results file bench/results/<name>.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.synth_rows, args.epochs, args.steps, args.repeats = 10_000, 1, 40, 1
        args.ablation_steps = 40
        if args.json_name == "train_throughput":
            args.json_name = "train_throughput_quick"  # never overwrite a full run
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    machine = common.machine_info()
    machine["torch_threads"] = torch.get_num_threads()
    print(f"# train_throughput\n\n{machine['cpu']}, {machine['cores']} cores, "
          f"torch {machine['torch']}, {machine['torch_threads']} torch thread(s), "
          f"load average at start {machine['load_average_at_start']}\n"
          f"{common.source_line(machine)}\n")
    datasets = load_datasets(args)

    # Ceiling of the machine, at the thread count the runs use.
    bs = make_config("random", 1, 1).triplets.batch_size
    ceiling = {"square 2048x2048x2048": matmul_gflops(2048, 2048, 2048)}
    for k in sorted({ds.x.shape[1] for ds in datasets}):
        ceiling[f"first layer [{3 * bs}x{k}]@[{k}x128]"] = matmul_gflops(3 * bs, k, 128)
    peak = ceiling["square 2048x2048x2048"]
    threads = torch.get_num_threads()
    if (os.cpu_count() or 1) > threads:
        torch.set_num_threads(os.cpu_count() or 1)
        ceiling[f"square 2048x2048x2048, {torch.get_num_threads()} threads (all cores)"] = (
            matmul_gflops(2048, 2048, 2048))
        torch.set_num_threads(threads)
    print(f"## Matmul ceiling (torch fp32, {threads} thread(s) unless noted, best of 3)\n")
    print(common.markdown_table([{"matmul": k, "GFLOP/s": v} for k, v in ceiling.items()]))
    print()

    rows: list[dict[str, Any]] = []
    ablation_rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for ds in datasets:
        for strategy in args.strategies:
            batching = product_batching(ds, strategy)
            steps = args.steps or batching["steps"]
            cfg = make_config(strategy, args.epochs, steps)
            # Warm-up: first calls pay for lazy initialisation (threads, allocator).
            wcfg = make_config(strategy, 1, max(5, steps // 10))
            product_run(ds, wcfg)
            bare_run(ds, wcfg, batching)
            prod: list[dict[str, Any]] = []
            bare: list[dict[str, Any]] = []
            for i in range(args.repeats):
                if i % 2 == 0:
                    prod.append(product_run(ds, cfg))
                    bare.append(bare_run(ds, cfg, batching))
                else:
                    bare.append(bare_run(ds, cfg, batching))
                    prod.append(product_run(ds, cfg))
            cpu_ratios = [(p["triplets"] / p["loop_cpu_s"]) / (b["triplets"] / b["loop_cpu_s"])
                          for p, b in zip(prod, bare, strict=True)]
            wall_ratios = [(p["triplets"] / p["loop_wall_s"]) / (b["triplets"] / b["loop_wall_s"])
                           for p, b in zip(prod, bare, strict=True)]
            # CPU time is the steadier clock with one thread; with more, idle OpenMP threads
            # spin and bill CPU time, so the wall clock is the honest one.
            ratios = cpu_ratios if torch.get_num_threads() == 1 else wall_ratios
            ps, bs_ = _summary(prod), _summary(bare)
            flops = model_flops(ds.x.shape[1], cfg)
            fpt = flops["train"] * records_per_triplet(strategy, batching)
            bare_tps = bare[0]["triplets"] / max(bare[0]["steps"], 1)
            prod_tps = prod[0]["triplets"] / max(prod[0]["steps"], 1)
            if strategy != "semi-hard" and abs(bare_tps - prod_tps) > 1e-9:
                print(f"WARNING: {ds.name} {strategy}: product {prod_tps:.1f} vs bare "
                      f"{bare_tps:.1f} triplets per step; batch compositions differ",
                      file=sys.stderr)
            row = {
                "data": ds.name,
                "strategy": strategy,
                "records/batch": batching["records"],
                "steps/epoch": steps,
                "triplets/step": prod[0]["triplets"] / max(prod[0]["steps"], 1),
                "product trip/s": ps["cpu_tps"],
                "bare trip/s": bs_["cpu_tps"],
                "product/bare": statistics.median(ratios),
                "range": f"{min(ratios):.2f}-{max(ratios):.2f}",
                "product/bare (wall, paired)": statistics.median(wall_ratios),
                "product/bare (wall, best)": ps["wall_tps"] / bs_["wall_tps"],
                "ms/step product": ps["cpu_ms_step"],
                "ms/step bare": bs_["cpu_ms_step"],
                "setup s": statistics.median(r["setup_wall_s"] for r in prod),
                "kFLOP/triplet": fpt / 1e3,
                "product GFLOP/s": ps["cpu_tps"] * fpt / 1e9,
                "product % of peak": 100 * ps["cpu_tps"] * fpt / 1e9 / peak,
                "bare % of peak": 100 * bs_["cpu_tps"] * fpt / 1e9 / peak,
            }
            rows.append(row)
            runs.append({"data": ds.name, "strategy": strategy, "batching": batching,
                         "product": prod, "bare": bare,
                         "cpu_ratios": cpu_ratios, "wall_ratios": wall_ratios,
                         "flops_per_record": flops,
                         "records_per_triplet": records_per_triplet(strategy, batching)})
            print(f"  {ds.name:32s} {strategy:10s} product/bare {row['product/bare']:.2f} "
                  f"({row['range']})  load {os.getloadavg()[0]:.2f}", file=sys.stderr)
            if args.ablation:
                ablation_rows += interleaved_ablation(ds, strategy, args.ablation_steps,
                                                      batching)

    print("## Throughput, product loop vs bare loop\n")
    print(f"{args.epochs} epoch(s) per run at the given steps per epoch, {args.repeats} "
          "product/bare pairs in ABBA order. Throughputs and ms/step: median over runs of "
          "process CPU time (wall time when torch uses more than one thread); product/bare: "
          "median of the paired ratios (range: min-max) on the same clock; wall, paired: "
          "the same on wall time; wall, best: best run of each. Peak = the square matmul at "
          f"the runs' thread count ({peak:.1f} GFLOP/s).\n")
    print(common.markdown_table(rows))
    print()
    if ablation_rows:
        print(f"## Ablation: the product's per-step features added one by one "
              f"({args.ablation_steps} interleaved steps, trimmed mean of wall time)\n")
        print(common.markdown_table(ablation_rows))
        print()

    profiles: dict[str, Any] = {}
    if args.profile is not None:
        ds = datasets[0]
        for strategy in args.profile or list(args.strategies):
            steps = args.steps or product_batching(ds, strategy)["steps"]
            text = profile_product(ds, strategy, steps, top=25)
            print(f"## cProfile of the product's train(), {strategy}, {ds.name}, "
                  f"1 epoch x {steps} steps (by own time)\n")
            print("```\n" + text + "\n```\n")
            profiles[strategy] = text

    path = common.write_json(args.json_name, {
        "machine": machine,
        "args": vars(args),
        "ceiling_gflops": ceiling,
        "datasets": [{"name": d.name, "rows": int(d.x.shape[0]), "features": int(d.x.shape[1]),
                      "classes": d.classes} for d in datasets],
        "rows": rows,
        "ablation": ablation_rows,
        "runs": runs,
        "profiles": profiles,
    })
    print(f"results: {path.relative_to(common.REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
