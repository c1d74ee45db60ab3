"""Training throughput: the product's loop (`trafficsiam.train.train`) against a bare loop.

Both loops train the same `SiameseMLP` with the same loss (`build_loss`), the same Adam
settings and the same batch composition on the same normalised matrix, in one process:

* strategy `random`: class-balanced random triplets (`random_triplets`, drawn once per
  epoch), `triplets.batch_size` triplets per step;
* strategies `semi-hard` / `batch-hard`: class-balanced P x K batches (`BalancedBatches`,
  drawn once per epoch) mined online with the same rule (farthest positive / closest valid
  negative, or closest semi-hard negative), duplicate-group negatives excluded.

The bare loop is what one would write by hand: index the batch, forward, distances, mine,
loss, backward, Adam step. It has no validation pass, gradient clipping, loss bookkeeping,
early-stopping state copies or deterministic-algorithms mode.

Throughput is triplets per second of the training loop. For the product that is
`triplets_seen / sum(epoch seconds)` (epoch seconds include the per-epoch validation pass);
the one-off setup (split, duplicate groups, validation triplets) is reported separately.
Runs alternate product / bare `--repeats` times; the ratio is the median of the paired ratios.

The machine's ceiling: GFLOP/s of a torch fp32 matmul of the model's first-layer shape and
of a large square, against the model FLOPs the loop performs per second.

    .venv/bin/python bench/train_throughput.py            # synth 50k rows + NSL-KDD KDDTrain+
    .venv/bin/python bench/train_throughput.py --quick    # smoke run
    .venv/bin/python bench/train_throughput.py --profile batch-hard   # + cProfile of the loop
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import math
import pstats
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import _common as common
import numpy as np
import torch

from trafficsiam import synth
from trafficsiam.config import Config, build_config
from trafficsiam.losses.base import pairwise_squared_distances
from trafficsiam.train import build_loss, build_model, split_validation, train
from trafficsiam.triplets import BalancedBatches, duplicate_groups, random_triplets

STRATEGIES = ("random", "semi-hard", "batch-hard")


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


def make_config(strategy: str, epochs: int, steps: int, seed: int = 0) -> Config:
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


# ------------------------------------------------------------------ the two loops


def product_run(ds: Dataset, cfg: Config) -> dict[str, Any]:
    start = time.perf_counter()
    result = train(ds.x, ds.codes, cfg, quiet=True)
    total = time.perf_counter() - start
    loop = sum(h["seconds"] for h in result.history)
    steps = cfg.train.epochs * (cfg.train.steps_per_epoch or 0)
    return {
        "triplets": int(result.triplets_seen),
        "steps": steps,
        "loop_s": loop,
        "setup_s": total - loop,
        "total_s": total,
        "epochs_run": len(result.history),
    }


def _bare_mine(
    d: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, strategy: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same selection rules as `trafficsiam.triplets.mine`, written inline."""
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


def bare_run(ds: Dataset, cfg: Config, deterministic: bool = False) -> dict[str, Any]:
    """A hand-written loop on the same model, loss, optimiser and batch composition."""
    torch.use_deterministic_algorithms(deterministic)
    torch.manual_seed(cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed)
    tc, trip = cfg.train, cfg.triplets
    # Same training rows as the product (its split), prepared outside the timed loop.
    train_idx, _ = split_validation(ds.codes, tc.validation_fraction, rng)
    groups = duplicate_groups(ds.x)
    xt = torch.from_numpy(ds.x)
    codes_t = torch.from_numpy(ds.codes.astype(np.int64))
    groups_t = torch.from_numpy(groups)
    model = build_model(ds.x.shape[1], cfg)
    loss_fn = build_loss(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=tc.learning_rate, weight_decay=tc.weight_decay)
    steps = int(tc.steps_per_epoch or 1)
    sampler = None
    if trip.strategy != "random":
        sampler = BalancedBatches(
            ds.codes[train_idx], trip.classes_per_batch, trip.samples_per_class, rng
        )
    model.train()
    triplets = 0
    start = time.perf_counter()
    for _ in range(tc.epochs):
        if sampler is None:
            bs = trip.batch_size
            t = random_triplets(ds.codes[train_idx], steps * bs, rng, groups[train_idx])
            trip_idx = torch.from_numpy(
                train_idx[np.stack([t.anchor, t.positive, t.negative]).reshape(3, steps, bs)]
            )
            for s in range(steps):
                emb = model(xt[trip_idx[:, s].reshape(-1)])
                a, p, n = emb[:bs], emb[bs : 2 * bs], emb[2 * bs :]
                loss = loss_fn(a, p, n)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                triplets += bs
        else:
            batches = torch.from_numpy(train_idx[np.stack(list(sampler.batches(steps)))])
            for s in range(steps):
                idx = batches[s]
                emb = model(xt[idx])
                dist = pairwise_squared_distances(emb)
                a, p, n = _bare_mine(dist.detach(), codes_t[idx], groups_t[idx], trip.strategy)
                loss = loss_fn.from_distances(dist[a, p], dist[a, n])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                triplets += len(a)
    loop = time.perf_counter() - start
    torch.use_deterministic_algorithms(False)
    return {"triplets": triplets, "steps": tc.epochs * steps, "loop_s": loop}


# ------------------------------------------------------------------ ceiling


def matmul_gflops(m: int, k: int, n: int, min_seconds: float = 0.5) -> float:
    a = torch.randn(m, k)
    b = torch.randn(k, n)
    out = torch.empty(m, n)
    for _ in range(3):
        torch.mm(a, b, out=out)
    reps, elapsed = 0, 0.0
    start = time.perf_counter()
    while elapsed < min_seconds:
        torch.mm(a, b, out=out)
        reps += 1
        elapsed = time.perf_counter() - start
    return 2.0 * m * k * n * reps / elapsed / 1e9


def model_flops(in_features: int, cfg: Config) -> dict[str, float]:
    """fp32 multiply-add FLOPs of the MLP per record: forward, and forward + backward
    (weight gradients for every layer, input gradients for every layer but the first)."""
    widths = [in_features, *cfg.model.hidden, cfg.model.embedding_dim]
    layers = list(zip(widths[:-1], widths[1:], strict=True))
    fwd = sum(2.0 * i * o for i, o in layers)
    bwd = sum(2.0 * i * o for i, o in layers) + sum(2.0 * i * o for i, o in layers[1:])
    return {"forward": fwd, "train": fwd + bwd}


def records_per_triplet(strategy: str, cfg: Config, classes: int) -> float:
    """Embedded records per mined/drawn triplet (the model's work is per record)."""
    if strategy == "random":
        return 3.0
    p = min(cfg.triplets.classes_per_batch, classes)
    k = cfg.triplets.samples_per_class
    if strategy == "batch-hard":
        return 1.0  # one triplet per anchor, every record of the batch is an anchor
    return p * k / (p * k * (k - 1))  # semi-hard: one triplet per (anchor, positive) pair


# ------------------------------------------------------------------ profile


def profile_product(ds: Dataset, strategy: str, epochs: int, steps: int, top: int) -> str:
    cfg = make_config(strategy, epochs, steps)
    prof = cProfile.Profile()
    prof.enable()
    train(ds.x, ds.codes, cfg, quiet=True)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime")
    stats.print_stats(top)
    return buf.getvalue()


def component_times(ds: Dataset, strategy: str, steps: int) -> dict[str, float]:
    """Milliseconds per step of the product's per-step extras, each timed in isolation."""
    from trafficsiam.train import MAX_GRAD_NORM, VALIDATION_TRIPLETS, _validate
    from trafficsiam.triplets import mine

    cfg = make_config(strategy, 1, steps)
    rng = np.random.default_rng(0)
    train_idx, _ = split_validation(ds.codes, 0.1, rng)
    groups = duplicate_groups(ds.x)
    model = build_model(ds.x.shape[1], cfg)
    loss_fn = build_loss(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt = torch.from_numpy(ds.x)
    codes_t = torch.from_numpy(ds.codes.astype(np.int64))
    groups_t = torch.from_numpy(groups)
    out: dict[str, float] = {}

    def per_step(fn: Any, n: int = steps) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1e3

    if strategy != "random":
        sampler = BalancedBatches(
            ds.codes[train_idx], cfg.triplets.classes_per_batch,
            cfg.triplets.samples_per_class, rng,
        )
        out["sampler BalancedBatches (1 batch)"] = per_step(sampler._one_batch)
        batch = train_idx[sampler._one_batch()]
        idx = torch.from_numpy(batch)
        emb = model(xt[idx])
        dist = pairwise_squared_distances(emb).detach()
        out["trafficsiam.triplets.mine"] = per_step(
            lambda: mine(dist, codes_t[idx], strategy, groups=groups_t[idx])
        )
        out["bench _bare_mine"] = per_step(
            lambda: _bare_mine(dist, codes_t[idx], groups_t[idx], strategy)
        )

        def fwd_bwd() -> None:
            e = model(xt[idx])
            d = pairwise_squared_distances(e)
            a, p, n = _bare_mine(d.detach(), codes_t[idx], groups_t[idx], strategy)
            loss_fn.from_distances(d[a, p], d[a, n]).backward()
    else:
        bs = cfg.triplets.batch_size
        t = random_triplets(ds.codes[train_idx], bs, rng, groups[train_idx])
        tri = torch.from_numpy(train_idx[np.concatenate([t.anchor, t.positive, t.negative])])

        def fwd_bwd() -> None:
            e = model(xt[tri])
            loss_fn(e[:bs], e[bs : 2 * bs], e[2 * bs :]).backward()

        out["random_triplets (1 batch, amortised over an epoch)"] = (
            per_step(lambda: random_triplets(
                ds.codes[train_idx], steps * bs, rng, groups[train_idx]), 3) / steps
        )
    out["Adam step"] = per_step(opt.step)
    out["clip_grad_norm_"] = per_step(
        lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    )
    total = torch.zeros(())
    loss = torch.tensor(0.5)

    def bookkeeping() -> None:
        nonlocal total
        total += loss.detach() * 48

    out["loss bookkeeping (total += loss * n)"] = per_step(bookkeeping)
    vt = random_triplets(ds.codes, VALIDATION_TRIPLETS, rng, groups)
    out["validation pass (per epoch, /steps)"] = per_step(
        lambda: _validate(model, loss_fn, xt, vt, torch.device("cpu")), 5
    ) / steps
    model.train()
    out["state_dict deepcopy (per improving epoch, /steps)"] = per_step(
        lambda: copy.deepcopy(model.state_dict()), 20
    ) / steps
    for det in (False, True):
        torch.use_deterministic_algorithms(det)
        out[f"forward+loss+backward, deterministic={det}"] = per_step(fwd_bwd)
    torch.use_deterministic_algorithms(False)
    return out


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synth-rows", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps per epoch")
    ap.add_argument("--repeats", type=int, default=3, help="alternating product/bare pairs")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--nsl-label", default="attack", choices=("attack", "category"))
    ap.add_argument("--no-nsl-kdd", action="store_true", help="synthetic data only")
    ap.add_argument("--profile", nargs="*", choices=STRATEGIES, default=None,
                    help="also cProfile the product loop (and time its parts) for these "
                         "strategies (all when given without a value)")
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.synth_rows, args.epochs, args.steps, args.repeats = 10_000, 2, 40, 1
    torch.set_num_threads(torch.get_num_threads())

    machine = common.machine_info()
    print(f"# train_throughput  ({machine['cpu']}, {machine['cores']} cores, "
          f"torch {machine['torch']}, {machine['torch_threads']} threads, "
          f"load {machine['load_average_at_start']})\n")
    datasets = load_datasets(args)

    # Ceiling of the machine.
    in_sizes = sorted({ds.x.shape[1] for ds in datasets})
    bs = make_config("random", 1, 1).triplets.batch_size
    ceiling = {
        "square 2048 GFLOP/s": matmul_gflops(2048, 2048, 2048),
        **{
            f"first layer [{3 * bs}x{k}]@[{k}x128] GFLOP/s": matmul_gflops(3 * bs, k, 128)
            for k in in_sizes
        },
    }
    peak = ceiling["square 2048 GFLOP/s"]
    print("## Matmul ceiling (torch fp32)\n")
    print(common.markdown_table([{"shape": k, "GFLOP/s": v} for k, v in ceiling.items()]))
    print()

    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for ds in datasets:
        for strategy in args.strategies:
            cfg = make_config(strategy, args.epochs, args.steps)
            # Warm-up: first calls pay for lazy initialisation (threads, allocator).
            wcfg = make_config(strategy, 1, max(5, args.steps // 10))
            product_run(ds, wcfg)
            bare_run(ds, wcfg)
            prod, bare = [], []
            for _ in range(args.repeats):
                prod.append(product_run(ds, cfg))
                bare.append(bare_run(ds, cfg))
            tp_p = [r["triplets"] / r["loop_s"] for r in prod]
            tp_b = [r["triplets"] / r["loop_s"] for r in bare]
            ratios = [p / b for p, b in zip(tp_p, tp_b, strict=True)]
            flops = model_flops(ds.x.shape[1], cfg)
            rpt = records_per_triplet(strategy, cfg, ds.classes)
            flop_per_triplet = flops["train"] * rpt
            p_med, b_med = statistics.median(tp_p), statistics.median(tp_b)
            row = {
                "data": ds.name,
                "strategy": strategy,
                "triplets/step": prod[0]["triplets"] / max(prod[0]["steps"], 1),
                "product trip/s": p_med,
                "product trip/s incl. setup": statistics.median(
                    r["triplets"] / r["total_s"] for r in prod
                ),
                "setup s": statistics.median(r["setup_s"] for r in prod),
                "bare trip/s": b_med,
                "product/bare": statistics.median(ratios),
                "ms/step product": statistics.median(
                    r["loop_s"] / r["steps"] * 1e3 for r in prod),
                "ms/step bare": statistics.median(r["loop_s"] / r["steps"] * 1e3 for r in bare),
                "MFLOP/triplet": flop_per_triplet / 1e6,
                "product % of peak": 100 * p_med * flop_per_triplet / 1e9 / peak,
                "bare % of peak": 100 * b_med * flop_per_triplet / 1e9 / peak,
            }
            rows.append(row)
            runs.append({"data": ds.name, "strategy": strategy, "product": prod, "bare": bare,
                         "ratios": ratios, "flops_per_record": flops,
                         "records_per_triplet": rpt})
            print(f"  {ds.name:32s} {strategy:10s} product/bare {row['product/bare']:.2f} "
                  f"({', '.join(f'{r:.2f}' for r in ratios)})", file=sys.stderr)

    print("## Throughput, product loop vs bare loop\n")
    print(f"{args.epochs} epochs x {args.steps} steps, median of {args.repeats} alternating "
          f"runs; peak = square-matmul GFLOP/s ({peak:.1f}).\n")
    print(common.markdown_table(rows))
    print()

    profiles: dict[str, Any] = {}
    if args.profile is not None:
        targets = args.profile or list(args.strategies)
        ds = datasets[0]
        for strategy in targets:
            parts = component_times(ds, strategy, steps=200 if not args.quick else 20)
            print(f"## Per-step parts, {strategy}, {ds.name} (ms per step, isolated)\n")
            print(common.markdown_table([{"part": k, "ms": v} for k, v in parts.items()]))
            print()
            text = profile_product(ds, strategy, 1, args.steps, top=25)
            print(f"## cProfile of the product loop, {strategy}, {ds.name}, "
                  f"1 epoch x {args.steps} steps (sorted by own time)\n")
            print("```\n" + text.strip() + "\n```\n")
            profiles[strategy] = {"parts_ms": parts, "cprofile": text}

    path = common.write_json("train_throughput", {
        "machine": machine,
        "args": vars(args),
        "ceiling_gflops": ceiling,
        "datasets": [{"name": d.name, "rows": int(d.x.shape[0]), "features": int(d.x.shape[1]),
                      "classes": d.classes} for d in datasets],
        "rows": rows,
        "runs": runs,
        "profiles": profiles,
    })
    print(f"results: {path.relative_to(common.REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
