"""Measuring fitted models on labelled records, under one roof:

    evaluate.py   the open-set protocol: one model, labelled test records, the metrics
    baselines.py  IsolationForest, kNN, RandomForest and the decision without the
                  embedding, on the same split and the same decision rule
    compare.py    losses and baselines side by side over seeds
    backtest.py   the leave-scenarios-out protocol on a user's own data (split, then
                  compare)

Each builds on the one above it; the pipeline's stages (`trafficsiam.api`) sit below.
"""
