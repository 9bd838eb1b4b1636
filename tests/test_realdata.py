"""The real-data workload: gensim's GloVe file and movie-review corpus, every approach, AdamW.

The frozen/changed outcome of each approach is written down below as data and asserted. Under
AdamW with weight decay every trainable row moves (the decay alone moves a non-zero row), so a
correct approach changes all of them and keeps the frozen ones bit-identical.
"""

import json

import pytest

import impls
from bench import __main__ as bench_cli
from bench import realdata
from bench.implementations import resolve
from bench.report.sources import REALDATA
from bench.verify import truth_table as expectations

pytest.importorskip("gensim")

EPOCHS = 3

# approach -> (frozen rows bit-identical to the file, every trainable row changed)
EXPECTED_OUTCOME = {
    "full": (False, True),  # control: the GloVe rows train too
    "freeze_all": (True, False),  # control: nothing trains
    "grad_zero": (False, True),  # a zero gradient still gets weight decay
    "grad_hook": (False, True),
    "detach_mask": (False, True),
    "split": (True, True),
    "concat": (True, True),
    "index_copy": (True, True),
    "parametrize": (True, True),
    "restore": (True, True),
}


def outcome_in_truth_table(approach):
    """What the truth table (``bench.verify.truth_table``) says of the same question."""
    frozen = expectations.expectation(approach, "adamw", "P1").outcome == expectations.HOLDS
    changed = expectations.expectation(approach, "adamw", "P2").outcome == expectations.HOLDS
    return frozen, changed


@pytest.fixture(scope="module")
def records():
    return {
        r["approach"]: r
        for r in realdata.run_workload([resolve(n) for n in impls.APPROACHES], EPOCHS)
    }


def test_the_table_here_agrees_with_the_truth_table():
    assert {a: outcome_in_truth_table(a) for a in EXPECTED_OUTCOME} == EXPECTED_OUTCOME


@pytest.mark.parametrize("approach", list(impls.APPROACHES))
def test_frozen_and_new_rows_behave_as_expected(records, approach):
    record = records[approach]
    frozen_identical, new_changed = EXPECTED_OUTCOME.get(approach) or outcome_in_truth_table(
        approach
    )
    assert record["frozen_rows_identical"] is frozen_identical, record
    assert (record["max_frozen_change"] == 0.0) is frozen_identical, record
    assert record["new_rows_changed"] == (record["new_rows"] if new_changed else 0), record


def test_real_files_give_both_found_and_new_words(records):
    counts = {(r["pretrained_rows"], r["new_rows"]) for r in records.values()}
    assert len(counts) == 1, "every approach must train on the same vocabulary"
    found, new = counts.pop()
    assert 0 < found <= 76  # test_glove.txt holds 76 words
    assert new > found


def test_corpus_has_two_balanced_labels():
    _, corpus = realdata.data_files()
    examples = realdata.read_corpus(corpus)
    labels = [label for label, _ in examples]
    assert len(examples) == 200 and labels.count(1) == labels.count(0) == 100
    assert all(tokens for _, tokens in examples)


def test_a_corpus_line_without_a_label_is_named(tmp_path):
    path = tmp_path / "corpus.cor"
    path.write_text("__label__pos fine .\nno label here\n")
    with pytest.raises(ValueError, match=r"corpus\.cor: line 2: expected a label .* got 'no'"):
        realdata.read_corpus(path)


def test_tokenize_lower_cases_and_splits_on_non_letters():
    assert realdata.tokenize("It's a Clich\xe9 -- 3-D fun!") == [
        "it",
        "s",
        "a",
        "clich\xe9",
        "d",
        "fun",
    ]


def test_command_writes_realdata_json_with_the_columns_the_report_reads(tmp_path, capsys):
    chosen = ["split", "grad_zero"]
    argv = ["realdata", "--out", str(tmp_path), "--epochs", "1", "--approaches", *chosen]
    assert bench_cli.main(argv) == 0

    written = json.loads((tmp_path / "realdata.json").read_text())
    assert [r["approach"] for r in written] == chosen
    for record in written:
        assert record.keys() >= set(REALDATA.columns)
        assert record["model"] == "mean_pool_linear" and record["epochs"] == 1
    assert (tmp_path / "realdata.csv").read_text().startswith("approach,")
    assert "frozen identical" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["--approaches", "no_such_approach"], ["--epochs", "0"], ["--epochs", "x"]]
)
def test_command_refuses_bad_arguments(tmp_path, argv, capsys):
    with pytest.raises(SystemExit):
        bench_cli.main(["realdata", "--out", str(tmp_path), *argv])
    assert "realdata" in capsys.readouterr().err
