"""Baselines: established detectors on the same normalised features as the model, measured
with the same `evaluate.metrics`.

* `no-embedding`: trafficsiam's own decision (the neighbours' vote, the scores and
  their calibration, `calibrate.fit_scorer`) on the normalised features, without the
  embedding: what the Siamese embedding contributes;
* `isolation-forest`: IsolationForest fitted on good records; novelty = minus its
  score; good, or outlier above the threshold;
* `knn`: mean Euclidean distance to the 5 nearest good records; good, or outlier above
  the threshold;
* `random-forest`: RandomForest classifier on the training labels; novelty =
  1 - P(good); the verdict is its predicted class (good or known_error), it never flags.

Verdicts are the model's rule (`decide`) at `score.false_alarm_rate`, each score a
conformal p-value against held-out training records (10% of each scenario, or of the
good records), never test data. Each baseline is seeded (its sample, split and trees).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.neighbors import NearestNeighbors

from trafficsiam import read
from trafficsiam.artifact import Artifact
from trafficsiam.assign import Assigner
from trafficsiam.calibrate import fit_scorer, good_code, good_traffic
from trafficsiam.cluster import fit_clusters
from trafficsiam.config import Config
from trafficsiam.contract import VERDICTS
from trafficsiam.decide import Calibration, decide, verdict_codes
from trafficsiam.errors import ConfigError
from trafficsiam.measure.evaluate import Predictions, masked
from trafficsiam.train import split_validation

# The kNN baseline: mean distance to this many nearest good records (issue 6).
KNN_NEIGHBOURS = 5
# Trees: IsolationForest's default 100 is noisy across seeds on wide inputs; 200 stays
# cheap beside the fit (BENCHMARKS.md §5).
FOREST_TREES = 200
HOLDOUT_FRACTION = 0.1


@dataclass
class BaselineData:
    """Normalised training and test features, training labels, the good label."""

    x_train: np.ndarray
    y_train: np.ndarray  # str
    x_test: np.ndarray
    good_label: str


def load_data(art: Artifact, train: list[str], test: list[str]) -> BaselineData:
    """The training and test records normalised by the model's own normaliser (fitted on
    the same training data), with the training records the model kept (a dropped rare
    scenario stays out) and their labels."""
    label = str(art.manifest["label_column"])
    features = list(art.schema.columns)
    frame = read.read_records(read.resolve_inputs(train), [label, *features]).frame
    keep = frame[label].astype(str).isin(art.manifest["scenarios"]).to_numpy()
    frame = frame[keep].reset_index(drop=True)
    x_train, _ = art.normaliser.transform(frame[features])
    x_test, _ = art.normaliser.transform(
        read.read_records(read.resolve_inputs(test), features).frame)
    return BaselineData(x_train, frame[label].astype(str).to_numpy(), x_test,
                        str(art.manifest["good_label"]))


def _good_split(data: BaselineData, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows) of the good training records."""
    good = np.flatnonzero(data.y_train == data.good_label)
    rng = np.random.default_rng(seed)
    rng.shuffle(good)
    n_hold = max(1, int(round(HOLDOUT_FRACTION * len(good))))
    return np.sort(good[n_hold:]), np.sort(good[:n_hold])


def _verdicts(explained: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Verdict names from `decide` (no new-type grouping: unexplained is outlier)."""
    codes = verdict_codes(explained, good, np.zeros(len(good), dtype=bool))
    return np.asarray(VERDICTS, dtype=object)[codes].astype(str)


def _thresholded(novelty: np.ndarray, held_out: np.ndarray, rate: float) -> Predictions:
    """The decision on one score: its conformal p-value against the held-out good
    records; good above `rate`, outlier at or below; no scenario assignment."""
    calibration = Calibration.fit(held_out[:, None], np.zeros(len(held_out), np.int64))
    p = calibration.p_values(novelty[:, None], np.zeros(len(novelty), np.int64))
    explained, good = decide(np.ones(len(p), dtype=bool), p, p, rate)
    return Predictions(verdict=_verdicts(explained, good), novelty=novelty)


def isolation_forest(data: BaselineData, cfg: Config, seed: int) -> Predictions:
    fit_rows, hold_rows = _good_split(data, seed)
    forest = IsolationForest(n_estimators=FOREST_TREES, random_state=seed, n_jobs=1)
    forest.fit(data.x_train[fit_rows])
    return _thresholded(-forest.score_samples(data.x_test),
                        -forest.score_samples(data.x_train[hold_rows]),
                        cfg.score.false_alarm_rate)


def knn(data: BaselineData, cfg: Config, seed: int) -> Predictions:
    fit_rows, hold_rows = _good_split(data, seed)
    index = NearestNeighbors(n_neighbors=KNN_NEIGHBOURS, algorithm="brute", n_jobs=1)
    index.fit(data.x_train[fit_rows])

    def score(x: np.ndarray) -> np.ndarray:
        return index.kneighbors(x)[0].mean(axis=1)

    return _thresholded(score(data.x_test), score(data.x_train[hold_rows]),
                        cfg.score.false_alarm_rate)


def random_forest(data: BaselineData, cfg: Config, seed: int) -> Predictions:
    """The predicted class is the verdict: it never flags (p-values of 1)."""
    forest = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    forest.fit(data.x_train, data.y_train)
    proba = forest.predict_proba(data.x_test)
    classes = forest.classes_.astype(str)
    predicted = classes[proba.argmax(axis=1)]
    good_col = np.flatnonzero(classes == data.good_label)
    p_good = proba[:, good_col[0]] if good_col.size else np.zeros(len(proba))
    ones = np.ones(len(proba))
    explained, good = decide(predicted == data.good_label, ones, ones,
                             cfg.score.false_alarm_rate)
    return Predictions(verdict=_verdicts(explained, good), novelty=1.0 - p_good,
                       scenario=predicted.astype(object), group=predicted)


def no_embedding(data: BaselineData, cfg: Config, seed: int) -> Predictions:
    """The model's own decision (vote, scores, calibration, HDBSCAN sub-modes) with the
    normalised inputs in place of the embedding: what the Siamese embedding adds."""
    rng = np.random.default_rng(seed)
    names, codes = np.unique(data.y_train, return_inverse=True)
    train_idx, val_idx = split_validation(codes, HOLDOUT_FRACTION, rng)
    x = np.ascontiguousarray(data.x_train, dtype=np.float32)
    clustered = fit_clusters(x[train_idx], data.y_train[train_idx], cfg.cluster,
                             data.good_label, rng)
    ref = train_idx[clustered.sample_idx]
    good = good_code(names, data.good_label)
    inputs = good_traffic(x, train_idx[codes[train_idx] == good], x[val_idx],
                          codes[val_idx] == good, cfg, rng)
    scorer, _ = fit_scorer(Assigner.from_clusterer(clustered.clusterer), clustered.labels,
                           codes[ref], names, good, x, ref, x[val_idx], x[val_idx],
                           codes[val_idx], cfg, inputs)
    x_test = np.ascontiguousarray(data.x_test, dtype=np.float32)
    a = scorer.assess(x_test, x_test, cfg.score.false_alarm_rate)
    scenario = masked(names[a.voted].astype(object), a.explained)
    group = np.where(a.explained, np.char.add("c", a.cluster.astype(str)), "outlier")
    return Predictions(verdict=_verdicts(a.explained, a.good), novelty=a.anomaly,
                       scenario=scenario, group=group, embedding=data.x_test)


BASELINES: dict[str, Callable[[BaselineData, Config, int], Predictions]] = {
    "no-embedding": no_embedding,
    "isolation-forest": isolation_forest,
    "knn": knn,
    "random-forest": random_forest,
}
DEFAULT_BASELINES = ("no-embedding", "isolation-forest", "knn")


def check_names(names: list[str] | tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ConfigError(
            f"baseline {unknown[0]!r} is not known; choose from: {', '.join(BASELINES)}"
        )


def run(name: str, data: BaselineData, cfg: Config, seed: int) -> tuple[Predictions, float]:
    """(predictions on the test features, seconds to fit and predict)."""
    check_names([name])
    start = time.perf_counter()
    pred = BASELINES[name](data, cfg, seed)
    return pred, time.perf_counter() - start
