"""The answer for new tokens in a language model, computed from ``newtokens.json`` records.

For each model (and device) the answer is the fastest approach that did the job: every frozen row
of the input table and of the output layer bit-identical, every new row trained, and the merged
plain model giving the trained model's logits bit for bit. Beside it, how it compares with the
answers people use (``grad_zero``, PEFT's trainable tokens, ``split``) and which approaches moved
frozen rows. Everything stays a number, a bool or a name: the report words it. Torch-free, so
the report can be rebuilt without the measuring code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bench.common.schema import OK, PEFT_PEER

COMPARED = ("grad_zero", PEFT_PEER, "split")
"""The approaches every answer is compared with, when they were measured."""
CASE_FIELDS = ("model", "device", "tied", "vocab_size", "new_tokens", "embedding_dim")
WINNER_FIELDS = (
    "approach", "step_median_s", "forward_median_s", "backward_median_s", "optimizer_median_s",
    "peak_bytes", "checkpoint_bytes", "full_checkpoint_bytes", "noisy",
)  # fmt: skip


def did_the_job(record: Mapping) -> bool:
    """Frozen rows of both layers identical, every new row trained, merged logits equal."""
    return (
        record.get("status") == OK
        and record.get("frozen_rows_identical") is True
        and record.get("merged_logits_equal") is True
        and record.get("new_rows") is not None
        and record.get("new_rows_changed") == record.get("new_rows")
    )


def newtokens_answers(records: Iterable[Mapping]) -> list[dict]:
    """One answer per (model, device), in the order the records first name them.

    Keys: the case (``model``, ``device``, ``tied``, ``vocab_size``, ``new_tokens``,
    ``embedding_dim``); the winner's ``approach`` (None if no approach did the job) and its
    ``step_median_s``, phase medians, ``peak_bytes``, ``checkpoint_bytes``,
    ``full_checkpoint_bytes``, ``noisy`` (its time was measured on a busy machine);
    ``checkpoint_fraction`` (its small checkpoint over the whole
    model's); ``did_the_job`` and ``moved_frozen_rows`` (approach names, fastest first, the
    latter those whose frozen rows changed); ``compared``: for each of ``COMPARED`` that was
    measured, ``{"did_the_job", "step_median_s", "peak_bytes", "checkpoint_bytes", "speedup",
    "peak_ratio"}`` where ``speedup`` is its step time over the winner's and ``peak_ratio`` its
    peak over the winner's (None without a winner).
    """
    groups: dict[tuple, list[Mapping]] = {}
    for record in records:
        if record.get("status") == OK:
            groups.setdefault((record["model"], record["device"]), []).append(record)
    return [_answer(group) for group in groups.values()]


def _answer(group: list[Mapping]) -> dict:
    by_speed = sorted(group, key=lambda r: r["step_median_s"])
    good = [r for r in by_speed if did_the_job(r)]
    winner = good[0] if good else None
    answer = {field: group[0][field] for field in CASE_FIELDS}
    answer.update({field: None if winner is None else winner.get(field) for field in WINNER_FIELDS})
    answer["checkpoint_fraction"] = (
        None if winner is None else winner["checkpoint_bytes"] / winner["full_checkpoint_bytes"]
    )
    answer["did_the_job"] = [r["approach"] for r in good]
    answer["moved_frozen_rows"] = [
        r["approach"] for r in by_speed if r.get("frozen_rows_identical") is False
    ]
    measured = {r["approach"]: r for r in group}
    answer["compared"] = {
        name: _comparison(measured[name], winner) for name in COMPARED if name in measured
    }
    return answer


def _comparison(record: Mapping, winner: Mapping | None) -> dict:
    return {
        "did_the_job": did_the_job(record),
        "step_median_s": record["step_median_s"],
        "peak_bytes": record["peak_bytes"],
        "checkpoint_bytes": record["checkpoint_bytes"],
        "speedup": None if winner is None else record["step_median_s"] / winner["step_median_s"],
        "peak_ratio": _ratio(
            record["peak_bytes"], None if winner is None else winner["peak_bytes"]
        ),
    }


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference or reference <= 0:
        return None
    return value / reference
