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

Throughput is triplets per second of the training loop, excluding the product's one-off
setup (split, duplicate groups, validation triplets: reported separately). The loop is
timed from the moment `train` creates its progress bar to its return; the per-epoch
validation pass is part of the product's loop. Time is measured both as wall time and as
process CPU time: on a shared machine (other people's test runs) CPU time is far less
noisy, which is also why the default is one torch thread (`--threads`). Runs alternate
product / bare `--repeats` times; ratios use the median CPU time and the best wall time.

`--ablation` adds the product's features to the bare loop one at a time to show where
the difference goes. The machine's ceiling: GFLOP/s of a torch fp32 matmul of the model's
first-layer shape and of a large square, against the model FLOPs the loop performs.

    .venv/bin/python bench/train_throughput.py            # synth 50k rows + NSL-KDD KDDTrain+
    .venv/bin/python bench/train_throughput.py --quick    # smoke run
    .venv/bin/python bench/train_throughput.py --ablation --profile batch-hard
"""

from __future__ import annotations

import argparse
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
    seed_everything,
    split_validation,
    train,
)
from trafficsiam.triplets import BalancedBatches, Triplets, duplicate_groups, random_triplets

STRATEGIES = ("random", "semi-hard", "batch-hard")

# Bare-loop variants for --ablation: each adds one product feature to the previous one.
LEVELS = (
    "bare",
    "+ deterministic mode (seed_everything)",
    "+ product per-step batch assembly and mining (_triplet_loss / _mined_loss)",
    "+ gradient clipping (_step)",
)


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


def bare_run(ds: Dataset, cfg: Config, level: int = 0) -> dict[str, Any]:
    """A hand-written loop on the same model, loss, optimiser and batch composition.

    `level` > 0 adds product features (see LEVELS) for the ablation."""
    if level >= 1:
        seed_everything(cfg.train.seed)
    else:
        torch.use_deterministic_algorithms(False)
        torch.manual_seed(cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed)
    tc, trip = cfg.train, cfg.triplets
    cpu = torch.device("cpu")
    # The same training rows as the product (its split); prepared outside the timed loop.
    train_idx, _ = split_validation(ds.codes, tc.validation_fraction, rng)
    groups = duplicate_groups(ds.x)
    xt = torch.from_numpy(ds.x)
    codes_t = torch.from_numpy(ds.codes.astype(np.int64))
    groups_t = torch.from_numpy(groups)
    model = build_model(ds.x.shape[1], cfg)
    loss_fn = build_loss(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=tc.learning_rate, weight_decay=tc.weight_decay)
    margin = cfg.loss.margin if cfg.loss.name == "triplet" else None
    steps = int(tc.steps_per_epoch or 1)
    sampler = None
    if trip.strategy != "random":
        sampler = BalancedBatches(
            ds.codes[train_idx], trip.classes_per_batch, trip.samples_per_class, rng
        )

    def update(loss: torch.Tensor) -> None:
        if level >= 3:
            product_train._step(opt, model, loss)
        else:
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
                if level >= 2:
                    sl = slice(s * bs, (s + 1) * bs)
                    part = Triplets(tri[0, sl], tri[1, sl], tri[2, sl])
                    loss = product_train._triplet_loss(model, loss_fn, xt, part, cpu)
                else:
                    emb = model(xt[trip_idx[:, s].reshape(-1)])
                    loss = loss_fn(emb[:bs], emb[bs : 2 * bs], emb[2 * bs :])
                update(loss)
                triplets += bs
        else:
            batches_np = train_idx[np.stack(list(sampler.batches(steps)))]
            batches = torch.from_numpy(batches_np)
            for s in range(steps):
                if level >= 2:
                    loss, n_trip = product_train._mined_loss(
                        model, loss_fn, xt, codes_t, groups_t, batches_np[s],
                        trip.strategy, margin, cpu,
                    )
                else:
                    idx = batches[s]
                    emb = model(xt[idx])
                    dist = pairwise_squared_distances(emb)
                    a, p, n = _bare_mine(
                        dist.detach(), codes_t[idx], groups_t[idx], trip.strategy
                    )
                    loss = loss_fn.from_distances(dist[a, p], dist[a, n])
                    n_trip = len(a)
                update(loss)
                triplets += n_trip
    w1, c1 = _clocks()
    torch.use_deterministic_algorithms(False)
    return {
        "triplets": triplets,
        "steps": tc.epochs * steps,
        "loop_wall_s": w1 - w0,
        "loop_cpu_s": c1 - c0,
        "load1": load,
    }


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


def records_per_triplet(strategy: str, cfg: Config) -> float:
    """Records embedded per triplet: the model's work is per record, and mined triplets
    share the records of their batch."""
    if strategy == "random":
        return 3.0  # anchor, positive and negative are embedded separately
    if strategy == "batch-hard":
        return 1.0  # one triplet per anchor; every record of a P x K batch is an anchor
    return 1.0 / (cfg.triplets.samples_per_class - 1)  # semi-hard: one per (a, p) pair


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
    return {
        "cpu_tps": statistics.median(r["triplets"] / r["loop_cpu_s"] for r in runs),
        "wall_tps": max(r["triplets"] / r["loop_wall_s"] for r in runs),
        "cpu_ms_step": statistics.median(r["loop_cpu_s"] / r["steps"] * 1e3 for r in runs),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synth-rows", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps per epoch")
    ap.add_argument("--repeats", type=int, default=3, help="alternating product/bare pairs")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads for every run (default 1: robust on a "
                         "shared machine; 0 = torch's default)")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--nsl-label", default="attack", choices=("attack", "category"))
    ap.add_argument("--no-nsl-kdd", action="store_true", help="synthetic data only")
    ap.add_argument("--ablation", action="store_true",
                    help="also run the bare loop with product features added one by one")
    ap.add_argument("--profile", nargs="*", choices=STRATEGIES, default=None,
                    help="also cProfile the product loop on the first data set for these "
                         "strategies (all when given without a value)")
    ap.add_argument("--quick", action="store_true", help="fast smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.synth_rows, args.epochs, args.steps, args.repeats = 10_000, 2, 40, 1
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    machine = common.machine_info()
    machine["torch_threads"] = torch.get_num_threads()
    print(f"# train_throughput\n\n{machine['cpu']}, {machine['cores']} cores, "
          f"torch {machine['torch']}, {machine['torch_threads']} torch thread(s), "
          f"load average at start {machine['load_average_at_start']}\n")
    datasets = load_datasets(args)

    # Ceiling of the machine, at the thread count the runs use.
    bs = make_config("random", 1, 1).triplets.batch_size
    ceiling = {"square 2048x2048x2048": matmul_gflops(2048, 2048, 2048)}
    for k in sorted({ds.x.shape[1] for ds in datasets}):
        ceiling[f"first layer [{3 * bs}x{k}]@[{k}x128]"] = matmul_gflops(3 * bs, k, 128)
    peak = ceiling["square 2048x2048x2048"]
    print(f"## Matmul ceiling (torch fp32, {torch.get_num_threads()} thread(s), best of 3)\n")
    print(common.markdown_table([{"matmul": k, "GFLOP/s": v} for k, v in ceiling.items()]))
    print()

    rows: list[dict[str, Any]] = []
    ablation_rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for ds in datasets:
        for strategy in args.strategies:
            cfg = make_config(strategy, args.epochs, args.steps)
            # Warm-up: first calls pay for lazy initialisation (threads, allocator).
            wcfg = make_config(strategy, 1, max(5, args.steps // 10))
            product_run(ds, wcfg)
            bare_run(ds, wcfg)
            prod, bare = [], []
            levels: dict[int, list[dict[str, Any]]] = {lv: [] for lv in range(1, len(LEVELS))}
            for _ in range(args.repeats):
                prod.append(product_run(ds, cfg))
                bare.append(bare_run(ds, cfg))
                if args.ablation:
                    for lv in levels:
                        levels[lv].append(bare_run(ds, cfg, level=lv))
            ps, bs_ = _summary(prod), _summary(bare)
            flops = model_flops(ds.x.shape[1], cfg)
            fpt = flops["train"] * records_per_triplet(strategy, cfg)
            row = {
                "data": ds.name,
                "strategy": strategy,
                "triplets/step": prod[0]["triplets"] / max(prod[0]["steps"], 1),
                "product trip/s (CPU)": ps["cpu_tps"],
                "bare trip/s (CPU)": bs_["cpu_tps"],
                "product/bare (CPU)": ps["cpu_tps"] / bs_["cpu_tps"],
                "product/bare (wall, best)": ps["wall_tps"] / bs_["wall_tps"],
                "ms/step product": ps["cpu_ms_step"],
                "ms/step bare": bs_["cpu_ms_step"],
                "setup s": statistics.median(r["setup_wall_s"] for r in prod),
                "MFLOP/triplet": fpt / 1e6,
                "product GFLOP/s": ps["cpu_tps"] * fpt / 1e9,
                "product % of peak": 100 * ps["cpu_tps"] * fpt / 1e9 / peak,
                "bare % of peak": 100 * bs_["cpu_tps"] * fpt / 1e9 / peak,
            }
            rows.append(row)
            entry: dict[str, Any] = {"data": ds.name, "strategy": strategy, "product": prod,
                                     "bare": bare, "flops_per_record": flops,
                                     "records_per_triplet": records_per_triplet(strategy, cfg)}
            if args.ablation:
                entry["ablation"] = {LEVELS[lv]: r for lv, r in levels.items()}
                for lv, name in enumerate(LEVELS):
                    s = bs_ if lv == 0 else _summary(levels[lv])
                    ablation_rows.append({
                        "data": ds.name, "strategy": strategy, "loop": name,
                        "ms/step (CPU)": s["cpu_ms_step"],
                        "vs bare": s["cpu_tps"] / bs_["cpu_tps"],
                    })
                ablation_rows.append({
                    "data": ds.name, "strategy": strategy,
                    "loop": "product train() (+ bookkeeping, validation each epoch)",
                    "ms/step (CPU)": ps["cpu_ms_step"], "vs bare": ps["cpu_tps"] / bs_["cpu_tps"],
                })
            runs.append(entry)
            print(f"  {ds.name:32s} {strategy:10s} product/bare CPU "
                  f"{row['product/bare (CPU)']:.2f}  wall {row['product/bare (wall, best)']:.2f}"
                  f"  load {os.getloadavg()[0]:.2f}", file=sys.stderr)

    print("## Throughput, product loop vs bare loop\n")
    print(f"{args.epochs} epochs x {args.steps} steps per run, {args.repeats} alternating "
          f"product/bare runs: CPU = median over runs of process CPU time, wall = best run. "
          f"Peak = the square matmul ({peak:.1f} GFLOP/s).\n")
    print(common.markdown_table(rows))
    print()
    if ablation_rows:
        print("## Ablation: product features added to the bare loop one by one\n")
        print(common.markdown_table(ablation_rows))
        print()

    profiles: dict[str, Any] = {}
    if args.profile is not None:
        ds = datasets[0]
        for strategy in args.profile or list(args.strategies):
            text = profile_product(ds, strategy, args.steps, top=25)
            print(f"## cProfile of the product's train(), {strategy}, {ds.name}, "
                  f"1 epoch x {args.steps} steps (by own time)\n")
            print("```\n" + text + "\n```\n")
            profiles[strategy] = text

    path = common.write_json("train_throughput", {
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
