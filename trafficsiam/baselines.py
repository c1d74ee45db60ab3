"""Baselines: established detectors on the same normalised features as the model, measured
with the same `evaluate.metrics`.

* `hdbscan-features`: trafficsiam's own cluster, calibrate and assign stages on the
  normalised features, without the embedding; novelty and verdict as the model's
  (without new-type grouping: a record is explained or an outlier);
* `isolation-forest`: IsolationForest fitted on good records; novelty = minus its
  score; good, or outlier above the threshold;
* `knn`: mean Euclidean distance to the 5 nearest good records; good, or outlier above
  the threshold;
* `random-forest`: RandomForest classifier on the training labels; novelty =
  1 - P(good); the verdict is its predicted class (good or known_error), it never flags.

Thresholds are calibrated like the model's: the `score.novelty_quantile` quantile of
held-out training records (10% of each scenario, or of the good records), never on
test data. Each baseline is seeded (its sample, split and trees).
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
from trafficsiam.calibrate import KnownScorer, build_prototypes
from trafficsiam.cluster import fit_clusters
from trafficsiam.config import Config
from trafficsiam.errors import ConfigError
from trafficsiam.evaluate import Predictions, masked
from trafficsiam.train import split_validation

# The kNN baseline: mean distance to this many nearest good records (issue 6).
KNN_NEIGHBOURS = 5
# Trees: IsolationForest's default 100 is noisy across seeds with 71 inputs; 200 is
# still a couple of seconds on 67k records.
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


def _thresholded(novelty: np.ndarray, held_out: np.ndarray, quantile: float) -> Predictions:
    """Good below the held-out quantile, outlier above; no scenario assignment."""
    threshold = float(np.quantile(held_out, quantile))
    verdict = np.where(novelty > threshold, "outlier", "good")
    return Predictions(verdict=verdict, novelty=novelty)


def isolation_forest(data: BaselineData, cfg: Config, seed: int) -> Predictions:
    fit_rows, hold_rows = _good_split(data, seed)
    forest = IsolationForest(n_estimators=FOREST_TREES, random_state=seed, n_jobs=1)
    forest.fit(data.x_train[fit_rows])
    return _thresholded(-forest.score_samples(data.x_test),
                        -forest.score_samples(data.x_train[hold_rows]),
                        cfg.score.novelty_quantile)


def knn(data: BaselineData, cfg: Config, seed: int) -> Predictions:
    fit_rows, hold_rows = _good_split(data, seed)
    index = NearestNeighbors(n_neighbors=KNN_NEIGHBOURS, algorithm="brute", n_jobs=1)
    index.fit(data.x_train[fit_rows])

    def score(x: np.ndarray) -> np.ndarray:
        return index.kneighbors(x)[0].mean(axis=1)

    return _thresholded(score(data.x_test), score(data.x_train[hold_rows]),
                        cfg.score.novelty_quantile)


def random_forest(data: BaselineData, cfg: Config, seed: int) -> Predictions:
    forest = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    forest.fit(data.x_train, data.y_train)
    proba = forest.predict_proba(data.x_test)
    classes = forest.classes_.astype(str)
    predicted = classes[proba.argmax(axis=1)]
    good_col = np.flatnonzero(classes == data.good_label)
    p_good = proba[:, good_col[0]] if good_col.size else np.zeros(len(proba))
    verdict = np.where(predicted == data.good_label, "good", "known_error")
    return Predictions(verdict=verdict, novelty=1.0 - p_good,
                       scenario=predicted.astype(object), group=predicted)


def hdbscan_features(data: BaselineData, cfg: Config, seed: int) -> Predictions:
    """The model's own cluster, calibrate and assign stages with the identity embedding."""
    rng = np.random.default_rng(seed)
    names, codes = np.unique(data.y_train, return_inverse=True)
    train_idx, val_idx = split_validation(codes, HOLDOUT_FRACTION, rng)
    x = np.ascontiguousarray(data.x_train, dtype=np.float32)
    clustered = fit_clusters(x[train_idx], data.y_train[train_idx], cfg.cluster,
                             data.good_label, rng)
    ref = train_idx[clustered.sample_idx]
    prototypes, owner = build_prototypes(x[ref], clustered.labels, cfg.cluster.prototypes, seed)
    scorer = KnownScorer(Assigner.from_clusterer(clustered.clusterer), clustered.labels,
                         prototypes, owner)
    scorer.thresholds = scorer.calibrate(x[val_idx], x[val_idx], cfg.score.novelty_quantile,
                                         cfg.score.min_calibration_records)
    x_test = np.ascontiguousarray(data.x_test, dtype=np.float32)
    assessed = scorer.assess(x_test, x_test)
    table = clustered.table.set_index("cluster")
    home_scenario = np.array([table["scenario"].get(int(c), "") if c >= 0 else ""
                              for c in assessed.home], dtype=object)
    explained = assessed.explained
    verdict = np.where(~explained, "outlier",
                       np.where(home_scenario == data.good_label, "good", "known_error"))
    scenario = masked(home_scenario, explained)
    group = np.where(explained, np.char.add("c", assessed.home.astype(str)), "outlier")
    return Predictions(verdict=verdict, novelty=assessed.novelty, scenario=scenario,
                       group=group, embedding=data.x_test)


BASELINES: dict[str, Callable[[BaselineData, Config, int], Predictions]] = {
    "hdbscan-features": hdbscan_features,
    "isolation-forest": isolation_forest,
    "knn": knn,
    "random-forest": random_forest,
}
DEFAULT_BASELINES = ("hdbscan-features", "isolation-forest", "knn")


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
