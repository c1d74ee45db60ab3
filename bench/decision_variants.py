"""Decision rules beside the shipped one, offline, on `bench/verdicts.py`'s fitted models
(issue 16): can the inputs give a second opinion on records whose neighbours vote a
failure, does breaking ts_p_good's ties rank unseen failures higher, and does another combination of
its three p-values?

KDDTest+'s drifted normal records are voted an attack by their embedding neighbours
(BENCHMARKS.md §6) although in the inputs they lie closer to good traffic than to that
attack. The variant asked here ("the inputs' second opinion"): a record voted a failure
s is called good when its input-distance p-value under good traffic is at least `floor`
and larger than its input-distance p-value under s. The floor is a constant, or chosen
per model on its held-out failure records (the smallest floor at which at most the
configured rate of them would be called good).

Per data set and seed, from the stored model: the test records (and the held-out
records the model stores) are measured once (`KnownScorer.measure`); each score's own
conformal p-value (`decide._p_beyond`) and the shipped combined p-values are kept; each
rule is then judged at the model's `score.false_alarm_rate`. The held-out alarm printed
is against the calibration that holds those records (not leave-one-out), so slightly
lower than `fit`'s.

    OMP_NUM_THREADS=1 .venv/bin/python bench/decision_variants.py --data sample,5g,ton-iot,nsl-kdd

Needs `bench/verdicts.py`'s run folder (`--runs`, default bench/results/verdicts-0.85)
and ../shared/datasets; `--models FOLDER` judges the models of a `bench/verdicts_variant.py`
tag instead, on the same records. Prints one line per data set and rule (mean over the seeds,
then each seed), then the rankings' AUROC, then what the records voted a failure are.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stored import LABELS, arguments, test_records  # noqa: E402

from trafficsiam import artifact  # noqa: E402
from trafficsiam.calibrate import KnownScorer, Measured  # noqa: E402
from trafficsiam.decide import Calibration, _p_beyond, decide  # noqa: E402
from trafficsiam.model import embed  # noqa: E402
from trafficsiam.prototypes import nearest_distance  # noqa: E402

VOTE, EMBEDDING, INPUTS = 0, 1, 2  # the scores' columns in `calibrate.SCORES`


@dataclass
class Evidence:
    """One set of records (test or held-out) under one model."""

    label: np.ndarray  # str
    voted_good: np.ndarray
    voted: np.ndarray  # scenario names
    p_voted: np.ndarray  # the shipped combined p-values
    p_good: np.ndarray
    each_voted: np.ndarray  # [n, 3] each score's own p-value under the voted scenario
    each_good: np.ndarray  # [n, 3] ... under good traffic
    anomaly: np.ndarray  # ts_anomaly
    # log(input distance to good traffic's prototypes / to the known failures' nearest)
    toward_failure: np.ndarray | None = None


def each_p(cal: Calibration, scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[n, 3] each score's own conformal p-value under the scenario `codes` gives."""
    out = np.ones(scores.shape)
    for s in np.unique(codes).tolist():
        columns = cal.scores.get(int(s))
        if columns is not None:
            at = np.flatnonzero(codes == s)
            for j in range(columns.shape[0]):
                out[at, j] = _p_beyond(columns[j], scores[at, j])
    return out


def evidence(ks: KnownScorer, m: Measured, label: np.ndarray, names: np.ndarray) -> Evidence:
    cal = ks.calibration
    assert cal is not None
    good = np.full(len(m.voted), ks.good_code)
    return Evidence(label.astype(str), m.voted == ks.good_code, names[m.voted],
                    cal.p_values(m.voted_scores, m.voted), cal.p_values(m.good_scores, good),
                    each_p(cal, m.voted_scores, m.voted), each_p(cal, m.good_scores, good),
                    m.good_distance / ks.anomaly_scale)


@dataclass
class Model:
    name: str
    seed: int
    good: str
    scenarios: list[str]
    rate: float
    test: Evidence
    held: Evidence


def load(runs: Path, name: str, seed: int, test: pd.DataFrame) -> Model:
    """The evidence of model `seed` of data set `name` on its `test` records."""
    art = artifact.load(runs / name / "models" / f"lossless-triplet-seed{seed}")
    scenarios = [str(s) for s in art.manifest["scenarios"]]
    names = np.array(scenarios)
    ks = art.scorer(art.config.score.anomaly_saturation)
    x, _ = art.normaliser.transform(test[list(art.schema.columns)])
    test_ev = evidence(ks, ks.measure(embed(art.model, x), x),
                       test[LABELS[name]].to_numpy(), names)
    failure = ks.prototype_scenario != ks.good_code
    test_ev.toward_failure = (np.log(nearest_distance(x, ks.good_prototypes) + 1e-6)
                              - np.log(nearest_distance(x, ks.prototypes[failure]) + 1e-6))
    hold = art.holdout
    held_m = ks.measure(hold[art.embedding_columns].to_numpy(np.float64), art.inputs["holdout"])
    held_ev = evidence(ks, held_m, hold["scenario"].astype(str).to_numpy(), names)
    return Model(name, seed, str(art.manifest["good_label"]), scenarios,
                 float(art.config.score.false_alarm_rate), test_ev, held_ev)


Rule = Callable[[Evidence, float], tuple[np.ndarray, np.ndarray]]


def shipped(ev: Evidence, rate: float) -> tuple[np.ndarray, np.ndarray]:
    explained, good = decide(ev.voted_good, ev.p_voted, ev.p_good, rate)
    return good, explained


def second_opinion(floor: float, embedding: bool = False) -> Rule:
    """Voted a failure, but the inputs are typical of good traffic (p >= floor) and
    more typical of it than of the voted failure: good."""
    def rule(ev: Evidence, rate: float) -> tuple[np.ndarray, np.ndarray]:
        good, explained = shipped(ev, rate)
        over = (~ev.voted_good & (ev.each_good[:, INPUTS] >= max(floor, rate))
                & (ev.each_good[:, INPUTS] > ev.each_voted[:, INPUTS]))
        if embedding:
            over &= ev.each_good[:, EMBEDDING] > rate
        return good | over, explained | over
    return rule


def held_out_floor(model: Model) -> float:
    """The smallest floor at which at most `rate` of the held-out failure records voted
    a failure would be called good by the second opinion."""
    h = model.held
    failure = h.label != model.good
    candidates = (failure & ~h.voted_good
                  & (h.each_good[:, INPUTS] > h.each_voted[:, INPUTS]))
    values = np.sort(h.each_good[candidates, INPUTS])[::-1]
    allowed = int(np.floor(model.rate * failure.sum()))
    return float(values[allowed]) if allowed < len(values) else model.rate


def metrics(model: Model, rule: Rule) -> dict[str, float]:
    t, rate = model.test, model.rate
    good, explained = rule(t, rate)
    is_good, novel = t.label == model.good, ~np.isin(t.label, model.scenarios)
    failure = ~is_good & ~novel
    called = np.where(good, model.good, t.voted)
    known = ~novel
    held_good, _ = rule(model.held, rate)
    h_good = model.held.label == model.good
    return {
        "good_false_alarm": (is_good & ~good).sum() / max(is_good.sum(), 1),
        "novel_called_good": (novel & good).sum() / max(novel.sum(), 1),
        "known_called_good": (failure & good).sum() / max(failure.sum(), 1),
        "known_accuracy": (known & explained & (called == t.label)).sum() / max(known.sum(), 1),
        "held_out_alarm": (h_good & ~held_good).sum() / max(h_good.sum(), 1),
    }


def ranked(primary: np.ndarray, secondary: np.ndarray | None = None) -> np.ndarray:
    """A score that sorts by `primary`, ties broken by `secondary` (higher: more novel)."""
    first = rankdata(primary, method="dense").astype(float)
    if secondary is None:
        return first
    second = rankdata(secondary, method="dense").astype(float)
    return first * (second.max() + 1) + second


def fisher(p: np.ndarray) -> np.ndarray:
    """Fisher's combination of the p-values in each row: -sum(log p), higher: more novel."""
    return -np.log(np.clip(p, np.finfo(float).tiny, 1.0)).sum(axis=1)


def rankings(model: Model) -> dict[str, float]:
    t = model.test
    novel = ~np.isin(t.label, model.scenarios)
    rows = novel | (t.label == model.good)
    each = t.each_good
    scores = {
        "ts_anomaly": ranked(t.anomaly),
        "1 - ts_p_good": ranked(-t.p_good),
        "ts_p_good, then ts_anomaly": ranked(-t.p_good, t.anomaly),
        "ts_p_good, then the input p-value": ranked(-t.p_good, -each[:, INPUTS]),
        # the three p-values of good traffic combined otherwise than by their minimum
        "Fisher over the three": ranked(fisher(each)),
        "Fisher, vote and inputs": ranked(fisher(each[:, [VOTE, INPUTS]])),
        "Fisher, embedding and inputs": ranked(fisher(each[:, [EMBEDDING, INPUTS]])),
        "mean rank of ts_anomaly and 1 - ts_p_good": rankdata(t.anomaly) + rankdata(-t.p_good),
    }
    if t.toward_failure is not None:
        # a supervised hint, like the RandomForest's: nearer the known failures' input
        # prototypes than good traffic's
        scores["toward the known failures"] = ranked(t.toward_failure)
        scores["ts_p_good, then toward the known failures"] = ranked(-t.p_good,
                                                                      t.toward_failure)
    return {k: float(roc_auc_score(novel[rows], v[rows])) for k, v in scores.items()}


def voted_failure(model: Model) -> dict[str, float]:
    """Records voted a failure, by what they are: how typical of good traffic and of the
    voted failure their inputs are (median input p-values), and the share the second
    opinion would call good at a floor of the rate and of 0.1."""
    t = model.test
    novel = ~np.isin(t.label, model.scenarios)
    is_good = t.label == model.good
    out: dict[str, float] = {}
    for tag, rows in (("good", is_good), ("novel", novel), ("known", ~is_good & ~novel)):
        rows = rows & ~t.voted_good
        g, v = t.each_good[rows, INPUTS], t.each_voted[rows, INPUTS]
        out[f"{tag} n"] = float(rows.sum())
        if not rows.any():
            continue
        out[f"{tag} p(good)"] = float(np.median(g))
        out[f"{tag} p(voted)"] = float(np.median(v))
        for floor in (model.rate, 0.1):
            out[f"{tag} at {floor:g}"] = float(np.mean((g > v) & (g >= floor)))
    return out


def line(tag: str, per_seed: list[dict[str, float]]) -> str:
    """Each key's mean over the seeds that have it, then each seed's value (nan: none)."""
    keys = list(dict.fromkeys(k for m in per_seed for k in m))
    values = {k: [m.get(k, np.nan) for m in per_seed] for k in keys}
    return f"{tag:34s} " + "  ".join(
        f"{k} {np.nanmean(v):.3f} ({' / '.join(f'{x:.3f}' for x in v)})"
        for k, v in values.items())


def main() -> None:
    args = arguments(__doc__, models=True)
    for name in args.data.split(","):
        test = test_records(args.runs, name)
        models = [load(args.models, name, seed, test) for seed in range(args.seeds)]
        rules: dict[str, Callable[[Model], Rule]] = {"shipped": lambda m: shipped}
        for floor in (0.01, 0.05, 0.1, 0.2):
            rules[f"second opinion, floor {floor}"] = (
                lambda m, f=floor: second_opinion(f))
            rules[f"... and the embedding, floor {floor}"] = (
                lambda m, f=floor: second_opinion(f, embedding=True))
        rules["second opinion, held-out floor"] = lambda m: second_opinion(held_out_floor(m))
        for tag, make in rules.items():
            print(f"{name:8s} " + line(tag, [metrics(m, make(m)) for m in models]), flush=True)
        floors = " / ".join(f"{held_out_floor(m):.3f}" for m in models)
        print(f"{name:8s} held-out floors {floors}")
        print(f"{name:8s} AUROC " + line("", [rankings(m) for m in models]), flush=True)
        print(f"{name:8s} voted a failure " + line("", [voted_failure(m) for m in models]),
              flush=True)


if __name__ == "__main__":
    main()
