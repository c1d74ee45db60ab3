"""Train: fit the Siamese MLP on triplets with Adam, a validation split and early stopping.

Two ways to form triplets (config `triplets.strategy`):
- `random`: class-balanced random triplets drawn offline each epoch (the
  original lossless-triplet recipe);
- `semi-hard` / `batch-hard`: online mining inside class-balanced batches of
  P classes x K records, which spends the updates on the triplets still wrong.

Every loss is called the same way, `loss.compute(out, labels, indices, distances)`
(`losses.base`): the batch's training output, its scenario codes and the (anchor,
positive, negative) rows drawn or mined in it. Triplet losses read the triplets; pair
losses each triplet as two pairs, so every mining strategy applies to them too; class
losses (prototypes, class weights, `takes_indices` false) the whole class-balanced batch,
whatever the strategy. Learnable loss parameters train with the network.

The validation loss is always measured on one fixed set of random triplets
from held-out records (their records, for class losses), so epochs are comparable
whatever the mining.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from trafficsiam.config import Config
from trafficsiam.losses import Loss, loss_class, make_loss
from trafficsiam.losses.base import Indices, pairwise_squared_distances
from trafficsiam.model import SiameseMLP
from trafficsiam.triplets import BalancedBatches, Triplets, duplicate_groups, mine, random_triplets

log = logging.getLogger("trafficsiam")

# Fixed validation triplets: enough for a stable mean, cheap to embed every epoch.
VALIDATION_TRIPLETS = 8192
# An improvement smaller than this (relative) does not reset early stopping's patience.
MIN_RELATIVE_IMPROVEMENT = 1e-3
# Bound on the gradient norm: a last defence for rare near-duplicate triplets.
MAX_GRAD_NORM = 10.0


@dataclass
class TrainResult:
    model: SiameseMLP
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    train_idx: np.ndarray
    val_idx: np.ndarray
    seconds: float
    triplets_seen: int
    device: str
    extra: dict[str, Any] = field(default_factory=dict)


def pick_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Same seed, same data, same machine -> the same weights, bit for bit, on CPU."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def split_validation(
    codes: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: each class gives `fraction` of its records (a class with
    fewer than 4 records stays entirely in training, so it keeps a positive pair)."""
    train_parts, val_parts = [], []
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        rng.shuffle(idx)
        n_val = int(round(fraction * len(idx))) if len(idx) >= 4 else 0
        n_val = min(n_val, len(idx) - 2)
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))


def build_model(in_features: int, cfg: Config) -> SiameseMLP:
    """The network for `cfg`, with the embedding head its loss needs."""
    return SiameseMLP(
        in_features,
        hidden=cfg.model.hidden,
        embedding_dim=cfg.model.embedding_dim,
        dropout=cfg.model.dropout,
        head=loss_class(cfg.loss.name).head,
    )


def build_loss(cfg: Config, n_classes: int | None = None) -> Loss:
    """The loss of `cfg`; `n_classes` (training scenarios) for losses with class weights."""
    return make_loss(
        cfg.loss.name,
        cfg.model.embedding_dim,
        n_classes=n_classes,
        beta=cfg.loss.beta,
        eps=cfg.loss.eps,
        margin=cfg.loss.margin,
        scale=cfg.loss.scale,
    )


def blank_inputs(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Training augmentation (`train.input_dropout`): each normalised input of each
    record is set to 0 (a numeric input's median, no one-hot category) with probability
    `rate`, unscaled, so that no single input decides a record's embedding."""
    if rate <= 0:
        return x
    return x * (torch.rand_like(x) >= rate).to(x.dtype)


def _triplet_loss(
    model: SiameseMLP, loss_fn: Loss, x: torch.Tensor, t: Triplets, device: torch.device,
    input_dropout: float = 0.0,
) -> torch.Tensor:
    """The loss of drawn triplets: their rows stacked (anchors, positives, negatives)."""
    idx = torch.from_numpy(np.concatenate([t.anchor, t.positive, t.negative])).to(device)
    out = model.forward_train(blank_inputs(x[idx], input_dropout))
    return loss_fn.compute(out, None, _stacked(len(t), device))


def _stacked(n: int, device: torch.device) -> Indices:
    """The (anchor, positive, negative) rows of n triplets stacked as three blocks."""
    rows = torch.arange(n, device=device)
    return rows, rows + n, rows + 2 * n


def _mined_loss(
    model: SiameseMLP,
    loss_fn: Loss,
    x: torch.Tensor,
    codes: torch.Tensor,
    groups: torch.Tensor,
    batch: np.ndarray,
    strategy: str,
    margin: float | None,
    device: torch.device,
    input_dropout: float = 0.0,
) -> tuple[torch.Tensor, int]:
    """The loss of a class-balanced batch: triplets mined in it for the losses that take
    them, the whole batch for the others; and how many terms it averages."""
    idx = torch.from_numpy(batch).to(device)
    out = model.forward_train(blank_inputs(x[idx], input_dropout))
    labels = codes[idx]
    indices: Indices | None = None
    dist = None
    if loss_fn.takes_indices:
        dist = pairwise_squared_distances(out[:, : model.embedding_dim])
        indices = mine(dist.detach(), labels, strategy, groups=groups[idx], margin=margin)
    loss = loss_fn.compute(out, labels, indices, dist)
    return loss, loss_fn.terms(len(batch), indices)


def train(
    x: np.ndarray,
    codes: np.ndarray,
    cfg: Config,
    quiet: bool = False,
    frame_rows: Sequence[int] | np.ndarray | None = None,
    input_dropout: float | None = None,
) -> TrainResult:
    """Train on the normalised matrix `x` with integer scenario `codes` (one per row).

    With `frame_rows`, the embeddings of those rows are recorded before the first epoch
    and after each one (`extra["frames"]`, float32 [epochs + 1, rows, N]) for animations
    of the training; recording changes nothing in the training itself.

    `input_dropout`: the blanking rate (`blank_inputs`); None: `train.input_dropout`,
    whose "auto" is decided by `api.fit` from good traffic and the failures (here,
    without them, it blanks nothing).
    """
    if input_dropout is None:
        configured = cfg.train.input_dropout
        input_dropout = 0.0 if configured == "auto" else float(configured)
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # The setting's first change imports torch._inductor (and torch._dynamo) lazily: done
    # here, before the try, so that a Ctrl-C can only interrupt that import before
    # training starts (exit 130), never leave it half done for the finally block below.
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    try:
        return _train(x, codes, cfg, quiet, frame_rows, input_dropout)
    finally:
        # seed_everything switches deterministic mode on; leave the caller's setting as it was.
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def validation_split(codes: np.ndarray, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): the split `train` makes with `cfg` (the first draw
    of its generator), for what the fit decides before training."""
    tc = cfg.train
    return split_validation(codes, tc.validation_fraction, np.random.default_rng(tc.seed))


def _train(x: np.ndarray, codes: np.ndarray, cfg: Config, quiet: bool,
           frame_rows: Sequence[int] | np.ndarray | None, input_dropout: float) -> TrainResult:
    start = time.perf_counter()
    tc, trip = cfg.train, cfg.triplets
    seed_everything(tc.seed)
    rng = np.random.default_rng(tc.seed)
    device = pick_device(tc.device)

    # the first draw of rng: `validation_split` gives the same rows
    train_idx, val_idx = split_validation(codes, tc.validation_fraction, rng)
    groups_np = duplicate_groups(x)
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    codes_t = torch.from_numpy(codes.astype(np.int64)).to(device)
    groups_t = torch.from_numpy(groups_np).to(device)

    model = build_model(x.shape[1], cfg).to(device)
    loss_fn = build_loss(cfg, int(codes.max()) + 1 if codes.size else 0).to(device)
    # The loss's own parameters (scale, class weights) train with the network; the
    # triplet and pair losses have none, so their updates are the network's alone.
    params = [*model.parameters(), *loss_fn.parameters()]
    # fused: one kernel for the whole update instead of ~10 small ops per tensor
    # (BENCHMARKS.md §1).
    optimiser = torch.optim.Adam(
        params, lr=tc.learning_rate, weight_decay=tc.weight_decay, fused=True
    )

    # Fixed validation triplets among held-out records (falls back to training
    # records when the held-out part cannot form a triplet).
    val_pool = val_idx if _can_form_triplets(codes[val_idx]) else train_idx
    vt = random_triplets(codes[val_pool], VALIDATION_TRIPLETS, rng, groups_np[val_pool])
    val_triplets = Triplets(val_pool[vt.anchor], val_pool[vt.positive], val_pool[vt.negative])

    # Class losses need whole class-balanced batches, whatever the strategy.
    batched = trip.strategy != "random" or not loss_fn.takes_indices
    if not batched:
        batch_records = trip.batch_size
    else:
        # Keep P x K records per batch when there are fewer than P scenarios: with 3
        # scenarios, 3 x 16 = 48 records would make steps tiny and mining myopic.
        n_classes = int((np.bincount(codes[train_idx]) >= 2).sum())
        per_class = max(
            trip.samples_per_class,
            trip.classes_per_batch * trip.samples_per_class // max(2, min(n_classes,
                                                                       trip.classes_per_batch)),
        )
        sampler = BalancedBatches(codes[train_idx], trip.classes_per_batch, per_class, rng)
        batch_records = sampler.batch_size
    steps = tc.steps_per_epoch or max(1, math.ceil(len(train_idx) / batch_records))
    # Semi-hard mining's margin window: the triplet loss's own margin (as resolved).
    margin = loss_fn.mining_margin
    frames_idx = None if frame_rows is None else np.asarray(frame_rows, dtype=np.int64)
    frames: list[np.ndarray] = []
    if frames_idx is not None:
        frames.append(_frame(model, xt, frames_idx, device))

    history: list[dict[str, float]] = []
    best_state = copy.deepcopy(model.state_dict())
    best_val, best_epoch, since_best = math.inf, 0, 0
    triplets_seen = 0
    stopped_early = False
    # The bar only on a terminal; elsewhere (logs, CI, cron) one line per epoch.
    bar = tqdm(
        range(1, tc.epochs + 1), desc="train", unit="epoch", leave=False, dynamic_ncols=True,
        disable=quiet or not sys.stderr.isatty(),
    )
    for epoch in bar:
        epoch_start = time.perf_counter()
        model.train()
        total, count = torch.zeros((), device=device), 0
        if not batched:
            t = random_triplets(codes[train_idx], steps * batch_records, rng, groups_np[train_idx])
            order = Triplets(train_idx[t.anchor], train_idx[t.positive], train_idx[t.negative])
            for s in range(steps):
                sl = slice(s * batch_records, (s + 1) * batch_records)
                part = Triplets(order.anchor[sl], order.positive[sl], order.negative[sl])
                loss = _triplet_loss(model, loss_fn, xt, part, device, input_dropout)
                _step(optimiser, params, loss)
                total += loss.detach() * len(part)
                count += len(part)
        else:
            for batch in sampler.batches(steps):
                loss, n_trip = _mined_loss(
                    model, loss_fn, xt, codes_t, groups_t, train_idx[batch],
                    trip.strategy, margin, device, input_dropout,
                )
                if n_trip:
                    _step(optimiser, params, loss)
                total += loss.detach() * n_trip
                count += n_trip
        triplets_seen += count
        train_loss = float(total) / max(count, 1)
        val_loss, val_acc = _validate(model, loss_fn, xt, codes_t, val_triplets, device)
        if frames_idx is not None:
            frames.append(_frame(model, xt, frames_idx, device))
        history.append({
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_triplet_accuracy": val_acc,
            "triplets": count,
            "seconds": time.perf_counter() - epoch_start,
        })
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", acc=f"{val_acc:.3f}")
        if not quiet:
            log.info(
                "epoch %3d/%d  train loss %.4f  val loss %.4f  val triplet accuracy %.3f",
                epoch, tc.epochs, train_loss, val_loss, val_acc,
            )
        if best_epoch == 0 or val_loss < best_val - MIN_RELATIVE_IMPROVEMENT * abs(best_val):
            best_val, best_epoch, since_best = val_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if since_best >= tc.patience:
                stopped_early = True
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    extra: dict[str, Any] = {}
    if frames_idx is not None:
        extra["frames"] = np.stack(frames)
        extra["frame_rows"] = frames_idx
    return TrainResult(
        model=model.cpu(),
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        train_idx=train_idx,
        val_idx=val_idx,
        seconds=time.perf_counter() - start,
        triplets_seen=triplets_seen,
        device=str(device),
        extra=extra,
    )


def _can_form_triplets(codes: np.ndarray) -> bool:
    values, counts = np.unique(codes, return_counts=True)
    return len(values) >= 2 and bool((counts >= 2).any())


def _step(optimiser: torch.optim.Optimizer, params: Sequence[torch.Tensor],
          loss: torch.Tensor) -> None:
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    optimiser.step()


@torch.no_grad()
def _frame(model: SiameseMLP, x: torch.Tensor, rows: np.ndarray,
           device: torch.device) -> np.ndarray:
    """Embeddings of `rows` now (evaluation mode; the caller's mode is restored)."""
    was_training = model.training
    model.eval()
    out = model(x[torch.from_numpy(rows).to(device)]).cpu().numpy().astype(np.float32)
    model.train(was_training)
    return out


@torch.no_grad()
def _validate(
    model: SiameseMLP, loss_fn: Loss, x: torch.Tensor, codes: torch.Tensor, t: Triplets,
    device: torch.device,
) -> tuple[float, float]:
    """(validation loss, triplet accuracy d_ap < d_an on the embedding)."""
    model.eval()
    idx = torch.from_numpy(np.concatenate([t.anchor, t.positive, t.negative])).to(device)
    n = len(t)
    out = model.forward_train(x[idx])
    emb = out[:, : model.embedding_dim] if model.head == "gaussian" else out
    a, p, ng = emb[:n], emb[n : 2 * n], emb[2 * n :]
    d_ap = ((a - p) ** 2).sum(1)
    d_an = ((a - ng) ** 2).sum(1)
    accuracy = float((d_ap < d_an).float().mean())
    if loss_fn.takes_indices:
        loss = float(loss_fn.compute(out, codes[idx], _stacked(n, device)))
    else:  # each record once
        records = torch.unique(idx)
        loss = float(loss_fn.compute(model.forward_train(x[records]), codes[records]))
    return loss, accuracy
