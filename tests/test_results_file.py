"""ResultsFile: valid after every batch, one record per key, a CSV view brought up to date on
close, and "done" asked of the file rather than recomputed by each command."""

import json

import pandas as pd

from bench.common import results as R
from bench.common.results import ResultsFile, load_records


def test_every_write_leaves_a_valid_json_list_with_one_record_per_key(tmp_path):
    path = tmp_path / "out.json"
    results = ResultsFile(path, key=("case",))
    results.extend([{"case": "a", "value": 1}, {"case": "b", "value": 2}])
    assert load_records(path) == [{"case": "a", "value": 1}, {"case": "b", "value": 2}]
    results.append({"case": "a", "value": 3})  # replaces a, which arrived last
    assert load_records(path) == [{"case": "b", "value": 2}, {"case": "a", "value": 3}]
    assert ResultsFile(path, key=("case",)).records == results.records  # a resume reads it back


def test_the_csv_lags_at_most_the_interval_and_is_complete_after_close(tmp_path, monkeypatch):
    # Longer than any uptime: the monotonic clock starts at boot, so a first write that
    # compared against zero made no view on a machine up for less than the interval.
    monkeypatch.setattr(R, "CSV_INTERVAL_S", float("inf"))
    path = tmp_path / "out.json"
    with ResultsFile(path, key=("case",)) as results:
        results.append({"case": "a", "nested": {"x": 1}})  # the first write makes the view
        results.append({"case": "b", "nested": {"x": 2}})
        assert list(pd.read_csv(results.csv_path)["case"]) == ["a"]
    frame = pd.read_csv(path.with_suffix(".csv"))
    assert list(frame["case"]) == ["a", "b"]
    assert list(frame["nested.x"]) == [1, 2]


def test_done_names_the_fields_and_the_records_a_resumed_run_skips(tmp_path):
    results = ResultsFile(tmp_path / "out.json", key=("approach", "case"))
    results.extend(
        [
            {"approach": "split", "case": 1, "status": "ok"},
            {"approach": "split", "case": 2, "status": "failed"},
            {"approach": "fused", "case": 1, "status": "ok"},
        ]
    )
    assert results.done(("approach",)) == {("split",), ("fused",)}
    ok = results.done(where=lambda r: r["status"] == "ok")
    assert ok == {results.key_of({"approach": a, "case": 1}) for a in ("split", "fused")}
    assert json.loads(ok.pop()[1]) == 1
