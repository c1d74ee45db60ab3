import numpy as np
import pandas as pd
import pytest

from trafficsiam import synth
from trafficsiam.errors import InputError
from trafficsiam.parse import parse_numbers
from trafficsiam.read import (
    common_columns,
    from_frame,
    iter_chunks,
    read_columns,
    read_records,
    resolve_inputs,
    training_records,
)


def test_single_parquet_file(tiny_frame, write_parquet):
    path = write_parquet(tiny_frame)
    records = read_records(resolve_inputs(str(path)))
    pd.testing.assert_frame_equal(records.frame, tiny_frame)
    assert records.where(3) == f"{path} row 3"


def test_folder_and_glob_read_all_files_in_sorted_order(tiny_frame, write_parquet, tmp_path):
    write_parquet(tiny_frame.iloc[:5], "d/b.parquet")
    write_parquet(tiny_frame.iloc[5:], "d/a.parquet")
    by_dir = read_records(resolve_inputs(tmp_path / "d"))
    by_glob = read_records(resolve_inputs(str(tmp_path / "d" / "*.parquet")))
    assert [p.name for p in by_dir.paths] == ["a.parquet", "b.parquet"]
    assert len(by_dir.frame) == 12
    pd.testing.assert_frame_equal(by_dir.frame, by_glob.frame)
    # row 7 of the combined frame is row 0 of b.parquet
    assert by_dir.where(7).endswith("b.parquet row 0")


def test_csv_reads_like_parquet(tiny_frame, write_parquet):
    path = write_parquet(tiny_frame, "data.csv")
    records = read_records([path], ["scenario", "bytes"])
    assert list(records.frame.columns) == ["scenario", "bytes"]
    # CSV is text; its numbers parse to the values parquet holds
    assert records.frame["bytes"].tolist() == [str(v) for v in tiny_frame["bytes"]]
    np.testing.assert_array_equal(parse_numbers(records.frame["bytes"])[0],
                                  tiny_frame["bytes"].to_numpy(dtype=float))


def test_a_csv_with_a_byte_order_mark_has_its_first_column_name_clean(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffid,bytes\n1,2\n".encode())
    assert read_columns(path) == ["id", "bytes"]
    assert list(read_records([path], ["id"]).frame.columns) == ["id"]


def test_only_requested_columns_are_loaded(tiny_frame, write_parquet):
    path = write_parquet(tiny_frame)
    records = read_records([path], ["latency", "scenario"])
    assert list(records.frame.columns) == ["latency", "scenario"]


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match=r"nope.parquet: no such file or folder; check the path"):
        resolve_inputs(str(tmp_path / "nope.parquet"))


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(InputError, match="the pattern matches no files"):
        resolve_inputs(str(tmp_path / "*.parquet"))


def test_folder_without_parquet(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="folder holds no .parquet or .csv files"):
        resolve_inputs(tmp_path)


def test_not_parquet(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("this is not parquet")
    with pytest.raises(InputError, match=r"fake.parquet: not a readable parquet file"):
        common_columns([path])


def test_files_with_different_columns(tiny_frame, write_parquet):
    a = write_parquet(tiny_frame, "a.parquet")
    b = write_parquet(tiny_frame.drop(columns=["latency"]), "b.parquet")
    with pytest.raises(InputError, match=r"b.parquet: column 'latency' is missing but present in"):
        common_columns([a, b])


def test_zero_rows(tiny_frame, write_parquet):
    path = write_parquet(tiny_frame.iloc[:0])
    with pytest.raises(InputError, match="no rows to read"):
        read_records([path])


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("{}")
    with pytest.raises(InputError, match=r"unsupported file type '.json'"):
        resolve_inputs(path)


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(InputError, match=r"empty.csv: the file is empty; re-export it or remove"):
        common_columns([path])


def test_duplicate_csv_header(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("scenario,bytes,bytes\ngood,1,2\n")
    with pytest.raises(InputError, match=r"dup.csv: column 'bytes' appears more than once"):
        common_columns([path])


def test_csv_with_broken_quote(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text('scenario,service\ngood,"http\nbad,dns\n' + "good,x\n" * 5)
    with pytest.raises(InputError, match=r"broken.csv: not a readable CSV file"):
        read_records([path])


def test_chunks_have_exactly_batch_size_rows_whatever_the_row_groups(tmp_path):
    frame = synth.generate(rows=2500, seed=3)
    path = tmp_path / "f.parquet"
    frame.to_parquet(path, index=False, row_group_size=333)
    chunks = list(iter_chunks(path, ["bytes_in"], 1000))
    assert [(s, t.num_rows) for s, t in chunks] == [(0, 1000), (1000, 1000), (2000, 500)]
    joined = np.concatenate([t.column("bytes_in").to_numpy() for _, t in chunks])
    np.testing.assert_array_equal(joined, frame["bytes_in"].to_numpy())


def test_csv_chunks_keep_text_as_written_and_missing_values_missing(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("id,bytes_in,protocol\n007,1.5,tcp\n008,,udp\n009,NA,tcp\n")
    (start, table), = iter_chunks(path, None, 10)
    assert start == 0 and table.column("id").to_pylist() == ["007", "008", "009"]
    assert table.column("bytes_in").to_pylist() == ["1.5", None, None]


def test_a_frame_is_one_input_named_dataframe(tiny_frame):
    records = training_records(tiny_frame.set_index("id"), "scenario", ignore=["const"])
    assert "const" not in records.frame and len(records.frame) == len(tiny_frame)
    assert records.where(3) == "DataFrame row 3"
    assert records.inputs() == [{"path": "DataFrame", "bytes": None}]
    with pytest.raises(InputError, match="DataFrame: no rows"):
        from_frame(tiny_frame.iloc[:0])


# -- one reader: every file once, pandas' own columns not records' fields (issue 18) ----


def test_a_pandas_index_stored_in_parquet_is_not_a_column(tmp_path):
    frame = synth.generate(rows=400, seed=1)
    kept = frame[frame["scenario"] != "error_type_2"]  # filtering stores __index_level_0__
    kept.to_parquet(tmp_path / "filtered.parquet")
    assert "__index_level_0__" not in read_columns(tmp_path / "filtered.parquet")
    records = read_records([tmp_path / "filtered.parquet"])
    assert list(records.frame.columns) == list(frame.columns)
    assert records.frame.index.equals(pd.RangeIndex(len(kept)))


def test_each_file_is_read_once_whatever_the_spelling(tmp_path):
    synth.generate(rows=50, seed=1).to_parquet(tmp_path / "a.parquet", index=False)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)  # a symlink loop under **
    assert resolve_inputs(f"{tmp_path}/**/*.parquet") == [tmp_path / "a.parquet"]
    other = tmp_path / "sub" / ".." / "a.parquet"
    assert resolve_inputs([tmp_path / "a.parquet", other]) == [tmp_path / "a.parquet"]


def test_a_folder_matched_by_a_glob_is_read_not_skipped(tmp_path):
    dataset = tmp_path / "flows.parquet"  # a Spark-style dataset folder
    dataset.mkdir()
    synth.generate(rows=50, seed=1).to_parquet(dataset / "part-0.parquet", index=False)
    synth.generate(rows=50, seed=2).to_parquet(tmp_path / "b.parquet", index=False)
    assert resolve_inputs(f"{tmp_path}/*.parquet") == [tmp_path / "b.parquet",
                                                       dataset / "part-0.parquet"]


# -- fit on exports larger than memory (issue 19, item 6) -------------------------------


def _equal_share(labels, n):
    from trafficsiam.cluster import stratified_sample

    return stratified_sample(labels, n, np.random.default_rng(0))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_inputs_over_max_records_are_sampled_in_two_streamed_passes(tmp_path, suffix):
    frames = [synth.generate(rows=3000, seed=s) for s in (1, 2)]
    frames[1].loc[:4, "scenario"] = "rare"  # five records of a rare scenario, in file 2
    paths = []
    for i, frame in enumerate(frames):
        path = tmp_path / f"part-{i}{suffix}"
        frame.to_parquet(path, index=False) if suffix == ".parquet" else frame.to_csv(
            path, index=False)
        paths.append(path)
    records = training_records(paths, "scenario", ["id"], max_records=1200,
                               choose=_equal_share)
    assert len(records.frame) == 1200 and "id" not in records.frame.columns
    assert (records.frame["scenario"] == "rare").sum() == 5  # rare ones kept whole
    facts = records.sampled
    assert facts["records"] == 6000 and facts["kept"] == 1200
    assert facts["per_scenario"]["rare"] == {"records": 5, "kept": 5}
    # every kept record is the row its origin names
    both = pd.concat(frames, keys=[0, 1])
    for i in (0, 599, 1199):
        origin = both.loc[(int(records.file_index[i]), int(records.row_in_file[i]))]
        assert origin["timestamp"] == records.frame["timestamp"].iloc[i] or suffix == ".csv"
        assert origin["bytes_in"] == parse_numbers(records.frame["bytes_in"])[0][i]


def test_inputs_within_max_records_are_read_whole(tmp_path):
    synth.generate(rows=500, seed=1).to_parquet(tmp_path / "a.parquet", index=False)
    records = training_records(tmp_path / "a.parquet", "scenario", max_records=1000,
                               choose=_equal_share)
    assert len(records.frame) == 500 and records.sampled is None


def test_csv_files_whose_size_bound_exceeds_max_records_are_still_read_whole(tmp_path):
    # small CSVs are not counted: their byte bound may pass max_records, their rows not
    paths = []
    for i in range(3):
        synth.generate(rows=10, seed=i).to_csv(tmp_path / f"p{i}.csv", index=False)
        paths.append(tmp_path / f"p{i}.csv")
    assert all(p.stat().st_size < 2000 for p in paths)  # under 2 x max_records bytes
    assert sum(p.stat().st_size // 2 for p in paths) > 1000  # the bound passes it
    records = training_records(paths, "scenario", max_records=1000, choose=_equal_share)
    assert len(records.frame) == 30 and records.sampled is None


def test_a_parquet_whose_pandas_metadata_renames_a_column_is_refused_in_one_line(tmp_path):
    """A damaged footer (found by the corruption property test): the pandas metadata
    names 'bytes' otherwise, so the column asked for never comes back."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(pd.DataFrame({"scenario": ["good", "bad"], "bytes": [1, 2]}),
                                 preserve_index=False)
    meta = json.loads(table.schema.metadata[b"pandas"])
    for col in meta["columns"]:
        if col["name"] == "bytes":
            col["name"] = "bytez"
    table = table.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})
    path = tmp_path / "damaged.parquet"
    pq.write_table(table, path)
    with pytest.raises(InputError, match=r"damaged.parquet: not a readable parquet file "
                                         r"\(damaged metadata: column 'bytes' comes back"):
        read_records([path], ["scenario", "bytes"])


def test_a_quoted_value_over_several_lines_is_one_value_in_fit_and_score(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text('scenario,note,bytes\ngood,"line one\nline two",1\nbad,plain,2\n')
    assert read_records([path]).frame["note"].tolist() == ["line one\nline two", "plain"]
    (start, table), = iter_chunks(path, None, 10)
    assert table.column("note").to_pylist() == ["line one\nline two", "plain"]
