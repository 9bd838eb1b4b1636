"""The suite's own strength: faulty variants are killed, correct implementations hold.

``python -m bench mutate`` runs every faulty variant of ``bench.mutate.faulty`` and every correct
implementation of ``bench.mutate.correct`` through the single-process matrix; these tests run the
same judgement in process (quick profile) and assert the targets: every variant killed except one
whose bug is on a path this machine cannot take, none of the correct ones violated anywhere.
"""

from __future__ import annotations

import json

import pytest

from bench.__main__ import main as bench_main
from bench.common.schema import CORRECT, FAULTY, HOLDS, KILLED, MUTATION, RUNS, SURVIVED
from bench.mutate.command import candidates, judge, matrix_scenarios, survival_reason
from bench.report.strength import BLIND_SPOT, TARGET_KILL_RATE, Strength
from bench.verify.sampling import SAMPLING_PROFILES
from bench.verify.scenarios import SCENARIOS

QUICK = SAMPLING_PROFILES["quick"]


def blocked(group: str | None) -> bool:
    """Whether some scenario of ``group`` cannot run on this machine."""
    return any(s.available() for s in SCENARIOS.values() if s.group == group)


@pytest.fixture(scope="module")
def strength_records() -> list[dict]:
    scenarios = tuple(matrix_scenarios())
    return [judge((candidate, QUICK, scenarios)) for candidate in candidates()]


def test_there_are_twenty_faulty_variants_and_three_correct_ones():
    roles = [c.role for c in candidates()]
    assert roles.count(FAULTY) >= 20 and roles.count(CORRECT) >= 3
    for candidate in candidates():
        assert candidate.bug, candidate.reference
        assert candidate.role == CORRECT or candidate.kind, candidate.reference


def test_every_faulty_variant_is_killed_unless_its_path_cannot_run_here(strength_records):
    by_name = {c.reference: c for c in candidates()}
    for record in strength_records:
        candidate = by_name[record["approach"]]
        if candidate.role != FAULTY:
            continue
        where = f"{record['approach']} ({candidate.bug})"
        if blocked(candidate.survives_where):
            assert record["outcome"] == SURVIVED, where
            assert record["survives_because"] == survival_reason(candidate) != BLIND_SPOT
            continue
        assert record["outcome"] == KILLED, f"{where} survived every cell: a blind spot"
        assert record["approach"] in record["detail"], record["detail"]  # the message names it
        assert f"{record['scenario']}/{record['property']}" == record["violated_cells"][0]
        assert record["counterexample"], where
    assert Strength.of(strength_records).kill_rate >= TARGET_KILL_RATE


def test_the_blind_spots_found_by_mutation_are_covered(strength_records):
    """An eval() path and a large-batch path survived before P4 looked up a batch in eval()
    mode and the strategies drew batches of 32 tokens and more."""
    cells = {r["approach"].rpartition(":")[2]: r for r in strength_records}
    evaluated = cells["EvalReadsPretrainedTable"]
    assert evaluated["property"] == "P4" and "in eval() mode" in evaluated["detail"]
    assert cells["LargeBatchFastPath"]["outcome"] == KILLED


def test_correct_implementations_hold_every_cell_they_run(strength_records):
    for record in strength_records:
        if record["role"] != CORRECT:
            continue
        where = f"{record['approach']}: {record['violated_cells']} {record['detail']}"
        assert record["outcome"] == HOLDS and not record["violated_cells"], where
        # Judged, not merely refused: most of the matrix ran.
        assert record["cells"] > 2 * record["refused_cells"], where


def test_a_survivor_is_a_blind_spot_unless_its_scenarios_cannot_run():
    faulty = {c.reference.rpartition(":")[2]: c for c in candidates()}
    assert survival_reason(faulty["ShiftedMask"]) == BLIND_SPOT
    cuda_only = faulty["CudaAssignsRepeatedIds"]
    if blocked(cuda_only.survives_where):
        reason = survival_reason(cuda_only)
        assert "cuda_adamw" in reason and "no CUDA device" in reason


def test_command_writes_records_resumes_and_rejects_unknown_names(tmp_path, capsys):
    out = tmp_path / "mutation"
    argv = ["mutate", "--only", "RestoredBeforeTheStep", "two_lookups", "--out", str(out)]
    assert bench_main([*argv, "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "1 of 1 faulty variants killed (100%); 0 false alarms on 1 correct" in printed
    records = json.loads((out / MUTATION.filename).read_text())
    assert [list(r) for r in records] == [list(MUTATION.columns)] * 2
    assert {r["outcome"] for r in records} == {KILLED, HOLDS}
    before = (out / MUTATION.filename).read_text()
    assert bench_main([*argv, "--jobs", "1"]) == 0  # nothing left to run: the file is kept
    assert (out / MUTATION.filename).read_text() == before
    assert bench_main(["mutate", "--only", "NoSuchVariant", "--out", str(out)]) == 2
    assert "--only: unknown variants ['NoSuchVariant']" in capsys.readouterr().err


def test_a_crash_kills_through_p0_only(strength_records):
    """A variant killed by an exception is killed by P0, never by the property being checked."""
    crashed = [r for r in strength_records if r["detail"] and "while training" in r["detail"]]
    assert crashed and all(r["property"] == RUNS for r in crashed)
