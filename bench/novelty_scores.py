"""Where the ranking signal for unseen attacks lives (issue 6): alternative novelty
scores on fitted models' own features, measured like `evaluate`'s novel_auroc and
novel_recall_at_5pct_fpr (novel test records against normal test records).

    .venv/bin/python bench/novelty_scores.py bench/results/quality/models/*-seed*

For each model folder (fitted on NSL-KDD KDDTrain+, e.g. by bench/quality.py):

* `novelty`: the product's ts_novelty (unlike the record's *home* scenario), and its two
  parts, the embedding distance and the input distance, each over its threshold;
* `ts_anomaly`: the product's ranking score, as the fit chose it (`score.anomaly_saturation`
  auto), and both of its distances: Euclidean to the nearest of the good-traffic
  prototypes, and saturated at 0.25, the mean over the 4 k-means fits (how unlike *good
  traffic*, whatever the home);
* `good clusters' prototypes`: input distance to the nearest prototype of a good-traffic
  cluster (the first `ts_anomaly`);
* `good density`: a nearest-component Gaussian-mixture score of the good training
  records in input space (64 k-means centres; per centre weight w and mean squared
  radius s2: min over centres of d2 / 2 s2 + 2 ln s2 - ln w), which also sees a record
  in a rare mode of good traffic;
* `good kNN`: mean distance to the 5 nearest good training records (the kNN baseline);
* `embedding kNN to good`: the same in the embedding;
* `IsolationForest`: fitted on the good training records (the baseline).

Every score is fitted on training records only; the test set only measures. The mean and
spread over the models are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import require_nsl_kdd  # noqa: E402

from trafficsiam import api  # noqa: E402
from trafficsiam.artifact import Artifact  # noqa: E402
from trafficsiam.measure import baselines  # noqa: E402
from trafficsiam.measure.evaluate import novel_auroc, recall_at_fpr  # noqa: E402
from trafficsiam.model import embed  # noqa: E402
from trafficsiam.prototypes import nearest_distance  # noqa: E402

COMPONENTS = 64


def good_density(fit: np.ndarray, seed: int):
    """A nearest-component mixture score of the rows of `fit` (see the module doc)."""
    centres = KMeans(COMPONENTS, n_init=1, random_state=seed).fit(fit).cluster_centers_

    def d2(a: np.ndarray) -> np.ndarray:
        return np.maximum((a**2).sum(1)[:, None] - 2 * a @ centres.T
                          + (centres**2).sum(1)[None], 0)

    nearest = d2(fit).argmin(1)
    weight = np.bincount(nearest, minlength=COMPONENTS) / len(fit)
    s2 = np.array([max(float(d2(fit[nearest == k])[:, k].mean()) if (nearest == k).any()
                       else 1.0, 1e-3) for k in range(COMPONENTS)])
    return lambda a: (d2(a) / (2 * s2) + 2 * np.log(s2) - np.log(weight + 1e-9)).min(1)


def scores(art: Artifact, train: Path, test: Path) -> dict[str, np.ndarray]:
    data = baselines.load_data(art, [str(train)], [str(test)])
    seed = int(art.config.train.seed)
    good_label = str(art.manifest["good_label"])
    x_good = data.x_train[data.y_train == good_label]
    emb = embed(art.model, data.x_test)
    scorer = art.scorer()
    assessed = scorer.assess(emb, data.x_test)
    t_emb, t_in = scorer.thresholds.lookup(assessed.home)
    good_clusters = [c for c, s in art.cluster_scenarios.items() if s == good_label]
    protos = scorer.prototypes[np.isin(scorer.prototype_cluster, good_clusters)]
    knn = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(x_good)
    emb_knn = NearestNeighbors(n_neighbors=5).fit(embed(art.model, x_good))
    forest = IsolationForest(n_estimators=baselines.FOREST_TREES, random_state=seed).fit(x_good)
    return {
        "novelty (product)": assessed.novelty,
        "  embedding part": assessed.embedding_distance / t_emb,
        "  input part": assessed.input_distance / t_in,
        "ts_anomaly (product: as the fit chose)": assessed.anomaly,
        "  Euclidean, good-traffic prototypes": art.scorer(saturation=None).good_distance(
            data.x_test),
        "  saturated at 0.25, 4 fits": art.scorer(saturation=0.25).good_distance(data.x_test),
        "good clusters' prototypes": nearest_distance(data.x_test, protos),
        "good density": good_density(x_good, seed)(data.x_test),
        "good kNN": knn.kneighbors(data.x_test)[0].mean(1),
        "embedding kNN to good": emb_knn.kneighbors(emb)[0].mean(1),
        "IsolationForest": -forest.score_samples(data.x_test),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    args = parser.parse_args()
    train, test = require_nsl_kdd("KDDTrain+.parquet"), require_nsl_kdd("KDDTest+.parquet")
    labels = pd.read_parquet(test, columns=["attack"])["attack"].astype(str).to_numpy()
    rows = []
    for folder in args.models:
        art = api.load(folder)
        novel = ~np.isin(labels, art.manifest["scenarios"])
        good = labels == str(art.manifest["good_label"])
        for name, s in scores(art, train, test).items():
            rows.append({"score": name, "model": folder.name,
                         "auroc": novel_auroc(s, novel, good),
                         "recall5": recall_at_fpr(s, novel, good, 0.05)})
        print(f"{folder}: done", file=sys.stderr)
    runs = pd.DataFrame(rows)
    print(f"Mean ± std over {len(args.models)} models.\n")
    print("| score | novel AUROC | novel recall @5% |")
    print("| --- | --- | --- |")
    for name, part in runs.groupby("score", sort=False):
        a, r = part["auroc"], part["recall5"]
        print(f"| {name} | {a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0:.3f} | "
              f"{r.mean():.3f} ± {r.std(ddof=1) if len(r) > 1 else 0:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
