"""Label hygiene: one rule for how a scenario label is spelled, used wherever labels are
read (fit, evaluate, backtest) and for the configured good label.

A label is text in Unicode NFC, so that the NFC and NFD spellings of "café" are one
scenario (they print the same); an empty or blank label is missing, in parquet as in
CSV (whose reader already reads an empty field as missing). With `data.label_normalise`
the spelling is also folded: surrounding whitespace dropped, inner runs of whitespace
one space, case folded ("Normal ", "normal" and "NORMAL" are one scenario). It is off
by default because those are different scenarios for some users; fit then refuses
labels that differ only by case or spaces and names the setting. Imports nothing of the
package (the config validates the good label with it).
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd

_SPACES = re.compile(r"\s+")


def clean_label(value: object, normalise: bool = False) -> str | None:
    """One label as the model knows it, or None when it is missing (None, NaN, blank)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = unicodedata.normalize("NFC", str(value))
    if not text.strip():
        return None
    if normalise:
        text = _SPACES.sub(" ", text.strip()).casefold()
    return text


def clean_labels(values: pd.Series, normalise: bool = False) -> pd.Series:
    """`clean_label` of each value (object dtype, None where missing), computed once per
    distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cleaned = np.array([clean_label(u, normalise) for u in uniques] + [None], dtype=object)
    return pd.Series(cleaned[np.where(codes >= 0, codes, len(uniques))], index=values.index,
                     dtype=object, name=values.name)
