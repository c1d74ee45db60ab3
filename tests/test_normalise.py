import json
import logging

import numpy as np
import pandas as pd
import pytest

from trafficsiam.config import NormaliseConfig
from trafficsiam.errors import InputError
from trafficsiam.normalise import OTHER_TOKEN, Normaliser
from trafficsiam.validate import FeatureSchema

SCHEMA = FeatureSchema(numeric=("bytes", "latency"), categorical=("protocol",))


def test_heavy_tail_is_clipped_and_counted(tiny_frame):
    norm = Normaliser.fit(tiny_frame, SCHEMA, NormaliseConfig(clip=3.0))
    x, counts = norm.transform(tiny_frame)
    assert x.dtype == np.float32
    assert np.abs(x[:, :2]).max() <= 3.0
    # the 1e9-byte flow is the one clipped value in 'bytes'
    assert counts.clipped == {"bytes": 1}
    assert x[5, 0] == 3.0


def test_missing_numeric_imputed_with_indicator_and_counted(tiny_frame):
    norm = Normaliser.fit(tiny_frame, SCHEMA, NormaliseConfig())
    x, counts = norm.transform(tiny_frame)
    assert counts.missing == {"latency": 1}
    names = norm.feature_names
    assert names[2] == "latency=missing"
    assert x[2, 2] == 1.0 and x[:, 2].sum() == 1.0
    assert not np.isnan(x).any()


def test_one_hot_with_other_bucket_for_unseen_values(tiny_frame):
    norm = Normaliser.fit(tiny_frame, SCHEMA, NormaliseConfig())
    assert norm.categories["protocol"] == ["tcp", "udp", "icmp"]
    new = tiny_frame.iloc[:3].copy()
    new["protocol"] = ["sctp", "tcp", None]
    x, counts = norm.transform(new)
    onehot = x[:, -4:]
    assert onehot.sum(axis=1).tolist() == [1.0, 1.0, 1.0]
    other = norm.feature_names.index(f"protocol={OTHER_TOKEN}")
    assert x[0, other] == 1.0 and x[2, other] == 1.0
    assert counts.other == {"protocol": 2}
    assert counts.missing["protocol"] == 1


def test_categories_capped_at_max(tiny_frame, caplog):
    frame = pd.DataFrame({"c": [f"v{i % 50}" for i in range(500)], "n": np.arange(500.0)})
    schema = FeatureSchema(numeric=("n",), categorical=("c",))
    norm = Normaliser.fit(frame, schema, NormaliseConfig(max_categories=5))
    assert len(norm.categories["c"]) == 5
    assert "has 50 distinct values" in caplog.text


def test_zero_iqr_falls_back_to_std():
    frame = pd.DataFrame({"retrans": [0.0] * 95 + [5.0, 8.0, 20.0, 40.0, 100.0]})
    schema = FeatureSchema(numeric=("retrans",), categorical=())
    norm = Normaliser.fit(frame, schema, NormaliseConfig())
    x, _ = norm.transform(frame)
    assert norm.scale[0] > 0
    assert x[:95, 0].tolist() == [0.0] * 95
    assert (x[95:, 0] > 0).all()


def test_state_round_trips_through_json(tiny_frame):
    norm = Normaliser.fit(tiny_frame, SCHEMA, NormaliseConfig())
    again = Normaliser.from_dict(json.loads(json.dumps(norm.to_dict())))
    a, _ = norm.transform(tiny_frame)
    b, _ = again.transform(tiny_frame)
    np.testing.assert_array_equal(a, b)
    assert again.feature_names == norm.feature_names


def test_numeric_inputs_are_signed_log1p_centred_and_scaled():
    """The transform's numeric part, bit for bit the documented formula (negative,
    zero, heavy-tailed and missing values included)."""
    from trafficsiam.normalise import signed_log1p

    rng = np.random.default_rng(4)
    values = np.r_[rng.lognormal(3, 2, 200), -rng.lognormal(1, 1, 50), np.zeros(10)]
    frame = pd.DataFrame({"v": values, "w": rng.normal(0, 1e4, len(values))})
    frame.loc[::17, "w"] = np.nan
    schema = FeatureSchema(numeric=("v", "w"), categorical=())
    norm = Normaliser.fit(frame, schema, NormaliseConfig(clip=50.0))
    x, _ = norm.transform(frame)
    raw = frame[["v", "w"]].to_numpy()
    want = (signed_log1p(raw) - np.asarray(norm.center)) / np.asarray(norm.scale)
    want[np.isnan(raw)] = 0.0
    want = np.clip(want, -50.0, 50.0).astype(np.float32)
    assert np.array_equal(x[:, :2], want)


def test_the_one_hot_warning_says_what_goes_to_other_and_which_setting_cut(caplog):
    n = 2000
    frame = pd.DataFrame({
        "svc": [f"s{i % 30}" for i in range(n)],  # 30 values, 66 or 67 records each
        "note": [f"free text {i}" for i in range(n)],  # every value on one record
        "x": np.arange(n, dtype=float),
    })
    schema = FeatureSchema(numeric=("x",), categorical=("svc", "note"))
    with caplog.at_level(logging.WARNING, logger="trafficsiam"):
        Normaliser.fit(frame, schema, NormaliseConfig(max_categories=20))
    assert ("column 'svc' has 30 distinct values; one-hot encoding keeps the 20 most frequent "
            "and puts the other 10 (33.0% of the records) in '(other)' "
            "(normalise.max_categories: raise it to keep more, or --ignore svc)") in caplog.text
    assert ("column 'note' has 2000 distinct values and none is on 0.1% of the records "
            "(normalise.min_category_share): all of it becomes '(other)'") in caplog.text
    assert "leave it out with --ignore note" in caplog.text


def test_a_value_never_seen_at_fit_is_named_new_and_a_rare_one_stays_other():
    frame = pd.DataFrame({"code": ["OK"] * 60 + ["FIN"] * 39 + ["RARE"], "n": np.arange(100.0)})
    schema = FeatureSchema(numeric=("n",), categorical=("code",))
    norm = Normaliser.fit(frame, schema, NormaliseConfig(min_category_share=0.05))
    assert norm.categories["code"] == ["OK", "FIN"] and norm.rare["code"] == ["RARE"]
    norm = Normaliser.from_dict(json.loads(json.dumps(norm.to_dict())))  # as loaded
    batch = pd.DataFrame({"code": ["RST", "RARE", "OK", "RST", None], "n": np.arange(5.0)})
    new = norm.new_values(batch)
    assert new == {"code": ["RST"]}
    x, _ = norm.transform(batch)
    shown, names = norm.with_new(batch, x, new)
    assert names[-1] == "code=RST (new)" and names[:-1] == norm.feature_names
    other = names.index(f"code={OTHER_TOKEN}")
    assert shown[:, -1].tolist() == [1, 0, 0, 1, 0]
    assert shown[:, other].tolist() == [0, 1, 0, 0, 1]  # the rare value and the missing one
    assert np.array_equal(shown[:, :-1][[1, 2, 4]], x[[1, 2, 4]])


def test_a_model_without_rare_values_calls_no_value_new():
    frame = pd.DataFrame({"code": ["OK"] * 60 + ["FIN"] * 40, "n": np.arange(100.0)})
    schema = FeatureSchema(numeric=("n",), categorical=("code",))
    data = Normaliser.fit(frame, schema, NormaliseConfig()).to_dict()
    del data["categorical"]["rare"]  # a manifest written before rare values were kept
    norm = Normaliser.from_dict(data)
    batch = pd.DataFrame({"code": ["RST", "OK"], "n": [1.0, 2.0]})
    assert norm.new_values(batch) == {}


def test_two_model_inputs_under_one_name_are_refused_at_fit():
    """A numeric column 'protocol=tcp' beside the value 'tcp' of 'protocol' (issue 18)."""
    frame = pd.DataFrame({"protocol=tcp": [1.0, 2.0, 3.0, 4.0],
                          "protocol": ["tcp", "udp", "tcp", "udp"]})
    schema = FeatureSchema(numeric=("protocol=tcp",), categorical=("protocol",))
    with pytest.raises(InputError, match=r"model input 'protocol=tcp' would stand for two "
                                         r"things.*rename the column 'protocol=tcp'"):
        Normaliser.fit(frame, schema, NormaliseConfig())
