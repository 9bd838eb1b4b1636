"""Any implementation through the same matrix: modules named only by reference ``MODULE:NAME``.

``tests/black_box_examples.py`` is code rowfreeze has never seen: a correct factory and a
deliberately faulty one. Named on the command line they get their matrix, the faulty one with a
counterexample that shows the violation when pasted; an option a factory refuses is recorded as
unsupported, not as a crash; the README's own example is verified the way the README says; and
``ROWFREEZE_APPROACHES`` runs the property tests on them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.__main__ import main as bench_main
from bench.common.schema import EXTERNAL, HOLDS, PEER, PROPERTIES, RUNS, UNSUPPORTED, VIOLATED
from bench.implementations import BadReference, resolve
from bench.verify.command import verify_cell
from bench.verify.judge import judge_case
from bench.verify.sampling import SAMPLING_PROFILES
from bench.verify.scenarios import SCENARIOS
from bench.verify.strategies import probe_case
from bench.verify.trajectory import TrainingCase

ROOT = Path(__file__).resolve().parent.parent
CORRECT = "tests.black_box_examples:new_rows_table"
FAULTY = "tests.black_box_examples:zeroed_gradient"


@pytest.fixture(autouse=True)
def in_the_repository(monkeypatch):
    """References are resolved from the current directory, as a user's would be."""
    monkeypatch.chdir(ROOT)


def verify(out: Path, approaches: list[str], scenarios: list[str]) -> dict:
    argv = ["verify", "--jobs", "1", "--out", str(out), "--approaches", *approaches]
    assert bench_main([*argv, "--scenarios", *scenarios]) == 0
    records = json.loads((out / "verification.json").read_text())
    return {(r["approach"], r["scenario"], r["property"]): r for r in records}


def printed_by(source: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(source, {})
    return printed.getvalue()


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("nope", "'nope' is neither a registered name"),
        ("no_such_module_here:factory", "module 'no_such_module_here' cannot be imported"),
        ("tests.black_box_examples:missing", "has no attribute 'missing'"),
        ("tests.black_box_examples:__doc__", "'__doc__' is a str, not callable"),
        ("tests.black_box_examples:", "expected MODULE:NAME"),
    ],
)
def test_a_bad_reference_says_what_is_wrong_and_what_was_expected(reference, says, capsys):
    with pytest.raises(BadReference, match=re.escape(says)):
        resolve(reference)
    with pytest.raises(SystemExit):
        bench_main(["verify", "--approaches", reference])
    assert "--approaches" in capsys.readouterr().err


def test_a_module_never_seen_gets_its_matrix_from_the_command_line(tmp_path):
    scenarios = ["sgd", "adamw", "padding_on_trainable", "max_norm"]
    cells = verify(tmp_path, [CORRECT, FAULTY], scenarios)
    assert {a for a, _, _ in cells} == {CORRECT, FAULTY}  # the reference exactly as given
    assert {r["origin"] for r in cells.values()} == {EXTERNAL}
    for (approach, scenario, prop), record in cells.items():
        where = f"{approach} / {scenario} / {prop}: {record['detail']}"
        if approach == CORRECT and scenario == "max_norm":
            assert record["outcome"] == UNSUPPORTED, where
            assert (
                "NotImplementedError: new_rows_table implements padding_idx only"
                in (record["detail"])
            )
        elif approach == CORRECT:
            assert record["outcome"] == HOLDS == record["expected"], where
    faulty = cells[FAULTY, "adamw", "P1"]
    assert faulty["outcome"] == VIOLATED and faulty["expected"] == HOLDS
    assert faulty["raised"] is None and "frozen row" in faulty["detail"]
    shown = printed_by(faulty["counterexample"])  # pasted, it shows the violation
    assert f"P1 ({PROPERTIES['P1']}) violated by approach {FAULTY!r}" in shown
    assert re.search(r"after step 1 frozen row 0 is \[.*\], but the weight given has", shown)
    assert cells[FAULTY, "sgd", "P1"]["outcome"] == HOLDS  # no decay: the zero gradient holds
    assert cells[FAULTY, "max_norm", "P1"]["outcome"] == VIOLATED  # renormalised in place


README_SECTION = "## Verify your own implementation"


def test_the_readme_example_is_verified_the_way_the_readme_says(tmp_path, monkeypatch):
    section = (ROOT / "README.md").read_text().split(README_SECTION)[1].split("\n## ")[0]
    source = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    command = re.findall(r"```bash\n(python -m bench verify .*?)\n```", section)[0]
    module, factory = re.search(r"--approaches (\w+):(\w+)", command).groups()
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    cells = verify(tmp_path / "reports", [f"{module}:{factory}"], ["adamw", "max_norm"])
    assert {r["outcome"] for (_, s, _), r in cells.items() if s == "adamw"} == {HOLDS}
    assert {r["outcome"] for (_, s, _), r in cells.items() if s == "max_norm"} == {UNSUPPORTED}


HOLDS_TEST = "test_cells_marked_holds_hold_on_every_example"


def test_property_tests_take_implementations_from_the_environment():
    env = {**os.environ, "ROWFREEZE_APPROACHES": f"{CORRECT}, {FAULTY}"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_properties.py",
         "-k", "black_box_examples and adamw"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout[-3000:]
    failed = re.findall(r"FAILED \S+", run.stdout)
    assert failed == [f"FAILED tests/test_properties.py::{HOLDS_TEST}[{FAULTY}-adamw]"], run.stdout[
        -3000:
    ]
    assert "P1" in run.stdout and "counterexample:" in run.stdout
    assert f"judge_case(resolve({FAULTY!r})" in run.stdout  # pasteable, naming the reference


def test_an_error_is_p0s_finding_and_leaves_the_rest_unjudged():
    """The seed's two-table class raises on the first new id (reading the table looks it up),
    and rewrites the caller's ids before that: P0 and P5 are violated, nothing else is judged."""
    weight = torch.randn(4, 2, dtype=torch.float64)
    mask = torch.tensor([False, False, True, True])
    ids = torch.tensor([0, 3])
    case = TrainingCase(weight, mask, (ids,), (torch.ones(2, 2, dtype=torch.float64),), {})
    seed = resolve("seed_two_tables")
    verdicts = judge_case(seed, SCENARIOS["sgd"], case).verdicts
    assert seed.origin == PEER
    assert sorted(verdicts) == [RUNS, "P5"]  # P1–P4 and P6: not judged on a case that raised
    assert "IndexError" in verdicts[RUNS].raised and "IndexError" in verdicts[RUNS].message
    assert not verdicts["P5"] and verdicts["P5"].raised is None
    assert "ids[0] (was [0, 3], is [0, 1])" in verdicts["P5"].message
    assert torch.equal(ids, torch.tensor([0, 3]))  # the case is put back for the next run


def test_a_mask_the_implementation_cannot_express_is_a_refused_case():
    case = TrainingCase(
        torch.randn(3, 2), torch.tensor([True, False, True]), (torch.tensor([1]),),
        (torch.ones(1, 2),), {},
    )  # fmt: skip
    result = judge_case(resolve("seed_two_tables"), SCENARIOS["sgd"], case)
    assert "seed_two_tables" in result.unsupported and "pretrained rows first" in result.unsupported


def test_reading_a_black_box_table_changes_nothing():
    """With max_norm a lookup renormalises in place; reading every id must not."""
    weight = torch.full((3, 2), 5.0)
    box = resolve(FAULTY).from_pretrained(weight, torch.tensor([False, True, False]), max_norm=1.0)
    assert torch.equal(box.merged_weight(), weight)
    assert torch.equal(box.module.weight, weight)
    assert isinstance(box.module, nn.Embedding) and box.module.max_norm == 1.0


LOOKUP_ONLY = "tests.black_box_examples:new_rows_lookup"
UNFAITHFUL_COPIES = {
    # A frozen table kept in bfloat16 is the weight given only where the weight is bfloat16.
    "tests.black_box_examples:half_precision_frozen": {"bfloat16"},
    "tests.black_box_examples:zeroed_first_row": set(),
}
QUICK = SAMPLING_PROFILES["quick"]
SINGLE_PROCESS = [
    name for name, s in SCENARIOS.items() if s.group != "distributed" and not s.available()
]


def test_a_correct_black_box_read_only_through_its_forward_holds_every_cell():
    """Its forward calls F.embedding(..., padding_idx=...) itself and it has no
    effective_weight(): a tied output layer must still see its whole table (no false P2/P3)."""
    implementation = resolve(LOOKUP_ONLY)
    for scenario in SINGLE_PROCESS:
        for record in verify_cell(implementation, scenario, QUICK):
            where = f"{scenario} / {record['property']}: {record['detail']}"
            assert record["outcome"] in (HOLDS, UNSUPPORTED), where
            assert record["outcome"] == HOLDS or "implements padding_idx only" in record["detail"]


@pytest.mark.parametrize("reference", sorted(UNFAITHFUL_COPIES))
def test_p1_is_judged_against_the_weight_given(reference):
    """A table faithful to its own first copy, not to the caller's weight, violates P1 in every
    scenario it runs, on the simplest case (rows 0 and 1 frozen), before the first step."""
    implementation = resolve(reference)
    ran = []
    for name in SINGLE_PROCESS:
        scenario = SCENARIOS[name]
        if "P1" not in scenario.properties or name in UNFAITHFUL_COPIES[reference]:
            continue
        result = judge_case(implementation, scenario, probe_case(scenario.padding), ("P1",))
        if result.unsupported:
            continue
        ran.append(name)
        verdict = result.verdicts["P1"]
        assert not verdict, f"{reference} / {name}: P1 holds"
        assert "before the first step frozen row" in verdict.message, verdict.message
        assert "but the weight given has" in verdict.message, verdict.message
    assert len(ran) > 20, ran


def test_a_p1_counterexample_shows_the_row_as_given_and_as_returned():
    record = verify_cell(resolve("tests.black_box_examples:zeroed_first_row"), "adamw", QUICK)[1]
    assert record["property"] == "P1" and record["outcome"] == VIOLATED
    shown = printed_by(record["counterexample"])
    assert re.search(
        r"before the first step frozen row 0 is \[0\.0(, 0\.0)*\], but the weight "
        r"given has \[-?\d",
        shown,
    ), shown
