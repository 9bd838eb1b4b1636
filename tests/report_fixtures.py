"""Small result files, written the way the commands write them, to build the report from.

They follow the schemas of ``verify``, ``run`` and ``realdata`` exactly but are tiny: three
approaches, four scenarios, a three-point vocabulary sweep, one headline case, one skipped case.
Timings are arguments, so a test can change them and watch the answer change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from bench.common.schema import (
    CORRECT,
    FALSE_ALARM,
    FAULTY,
    HOLDS,
    KILLED,
    MUTATION,
    NEWTOKENS,
    REALDATA,
    RESULTS,
    SURVIVED,
    VERIFICATION,
    ResultFileSchema,
    record,
)

INJECTION = "<script>alert('x')</script>"

ENV = {
    "torch_version": "2.13.0",
    "python_version": "3.11.9",
    "cpu_model": f"Fixture CPU {INJECTION}",
    "cpu_count": 2,
    "threads": 2,
    "gpu_name": None,
    "cuda_version": None,
    "commit": "0123456789ab",
    "date": "2025-11-25T04:00:00+00:00",
}

# scenario -> (group, weight decay, params, properties); params as ``bench verify`` records them:
# a named optimizer configuration, its torch class and its keyword arguments.
SCENARIOS = {
    "adamw": (
        "optimizer",
        0.01,
        {"optimizer": "adamw", "optimizer_class": "AdamW", "optimizer_kwargs": {}, "options": {}},
        ("P1", "P2", "P3"),
    ),
    "sgd_momentum": (
        "optimizer",
        0.0,
        {
            "optimizer": "sgd_momentum",
            "optimizer_class": "SGD",
            "optimizer_kwargs": {"momentum": 0.9},
            "options": {},
        },
        ("P1", "P2", "P3"),
    ),
    "max_norm": (
        "option",
        0.0,
        {"optimizer": "adam", "optimizer_class": "Adam", "options": {"max_norm": 1.0}},
        ("P1",),
    ),
    "ddp": (
        "distributed",
        0.0,
        {"optimizer": "adam", "optimizer_class": "Adam", "optimizer_kwargs": {}, "options": {}},
        ("P1", "P7"),
    ),
}
APPROACHES = ("full", "grad_zero", "split")

WEIGHT_DECAY_EXPLANATION = f"AdamW decays every row, zero gradient or not {INJECTION}"
# (approach, scenario, property) -> (outcome, expected, explanation, detail)
NOT_HOLDING = {
    ("full", "adamw", "P1"): ("violated", "violated", "every row trains by construction", None),
    ("full", "sgd_momentum", "P1"): ("violated", "violated", "every row trains", None),
    ("full", "max_norm", "P1"): ("violated", "violated", "every row trains", None),
    ("full", "ddp", "P1"): ("violated", "violated", "every row trains", None),
    ("grad_zero", "adamw", "P1"): ("violated", "violated", WEIGHT_DECAY_EXPLANATION, None),
    ("split", "max_norm", "P1"): ("violated", "holds", "max_norm renormalises in place", None),
    ("split", "ddp", "P7"): (
        "unsupported",
        "unsupported",
        "",
        "DDP needs find_unused_parameters=True for split",
    ),
}


def verification_records(extra: Mapping[tuple[str, str, str], tuple] | None = None) -> list[dict]:
    """One record per (approach, scenario, property); ``extra`` adds or overrides cells."""
    cells = dict(NOT_HOLDING)
    cells.update(extra or {})
    approaches = list(dict.fromkeys([*APPROACHES, *(a for a, _, _ in cells)]))
    records = []
    for approach in approaches:
        for scenario, (group, decay, params, properties) in SCENARIOS.items():
            for property_name in properties:
                outcome, expected, explanation, detail = cells.get(
                    (approach, scenario, property_name), ("holds", "holds", "", None)
                )
                violated = outcome == "violated"
                records.append(
                    {
                        "approach": approach,
                        "scenario": scenario,
                        "group": group,
                        "property": property_name,
                        "outcome": outcome,
                        "expected": expected,
                        "explanation": explanation,
                        "examples": 25,
                        "counterexample": f"# {approach} {scenario}\nimport torch\n"
                        if violated
                        else None,
                        "max_abs_change": 0.004 if violated else 0.0,
                        "detail": detail,
                        "weight_decay": decay,
                        "sparse_gradients": False,
                        "params": params,
                        "env": ENV,
                    }
                )
    return records


HEADLINE_STEP_S = {
    "grad_zero": 1.0,
    "split": 0.006,
    "full": 0.3,
    "peft_trainable_tokens": 0.02,
}
D, T, FRACTION = 300, 4096, 0.01


def case(approach: str, V: int, sweep: str, fraction: float = FRACTION) -> dict:
    return {
        "approach": approach,
        "device": "cpu",
        "dtype": "float32",
        "V": V,
        "D": D,
        "trainable_fraction": fraction,
        "n_trainable": int(V * fraction),
        "T": T,
        "optimizer": "AdamW",
        "sparse": False,
        "sweep": sweep,
        "profile": "quick",
    }


def persistent_bytes(approach: str, V: int, fraction: float) -> int:
    """Parameters + gradient + two AdamW states over the trained rows, plus frozen buffers."""
    trained_rows = V if approach in ("full", "grad_zero") else int(V * fraction)
    frozen_rows = V - trained_rows if approach != "split" else V
    return 4 * D * (4 * trained_rows + frozen_rows)


def measured(row: dict, phase: str, seconds: float) -> dict:
    fraction = row["trainable_fraction"]
    bound_bytes = 4 * D * (2 * T + 4 * int(row["V"] * fraction))
    bandwidth = 10e9
    return {
        **row,
        "phase": phase,
        "status": "ok",
        "reason": None,
        "median_s": seconds,
        "iqr_s": seconds * 0.05,
        "rounds": 7,
        "tokens_per_s": T / seconds,
        "persistent_bytes": persistent_bytes(row["approach"], row["V"], fraction),
        "peak_bytes": int(1.5 * persistent_bytes(row["approach"], row["V"], fraction)),
        "bound_bytes": bound_bytes,
        "bandwidth_bytes_per_s": bandwidth,
        "bound_s": bound_bytes / bandwidth,
        "fraction_of_bound": bound_bytes / bandwidth / seconds,
        "loss_bytes": 4 * T * D * 4,
        "fraction_of_bound_with_loss": (bound_bytes + 4 * T * D * 4) / bandwidth / seconds,
        "allreduce_bytes": None,
        "frozen_rows_identical": row["approach"] != "full",
        "threads": 2,
        "load_before": 0.05,
        "noisy": False,
        "attempts": 1,
        "env": ENV,
    }


def phases(row: dict, step_s: float) -> list[dict]:
    return [
        measured(row, "forward", step_s * 0.2),
        measured(row, "forward_backward", step_s * 0.6),
        measured(row, "step", step_s),
    ]


def results_records(headline_step_s: Mapping[str, float] = HEADLINE_STEP_S) -> list[dict]:
    """Headline case for every approach, a vocab and a fraction sweep, DDP, one skipped case."""
    records = []
    for approach, step_s in headline_step_s.items():
        records += phases(case(approach, 400_000, "headline"), step_s)
    for approach in APPROACHES:
        for V in (10_000, 100_000, 400_000):
            scale = V / 400_000 if approach in ("full", "grad_zero") else 1.0
            records += phases(case(approach, V, "vocab"), headline_step_s[approach] * scale)
        for fraction in (0.001, 0.01, 0.5):
            scale = 1.0 if approach in ("full", "grad_zero") else fraction / FRACTION
            records.append(
                measured(case(approach, 400_000, "fraction", fraction), "step", 0.006 * scale)
            )
    compiled = {**case("split", 400_000, "compiled"), "compile": "fullgraph"}
    records.append(measured(compiled, "step", headline_step_s["split"] * 0.8))
    kept = {**case("split", 400_000, "retained"), "malloc": "retained"}
    records.append(measured(kept, "step", headline_step_s["split"] * 0.6))
    for loss, share in ((None, 0.7), ("given-gradient", 0.5)):
        one_process = {"process": "side-by-side", "malloc": "retained", "loss": loss}
        gradient = {**case("split", 400_000, "gradient"), **one_process}
        row = measured(gradient, "step", headline_step_s["split"] * share)
        if loss is not None:  # a given gradient computes no loss
            row.update(loss_bytes=0, fraction_of_bound_with_loss=row["fraction_of_bound"])
        records.append(row)
    for approach in ("grad_zero", "split"):
        ddp = measured(case(approach, 10_000, "ddp"), "ddp_step", 0.05)
        ddp["allreduce_bytes"] = 4 * D * (10_000 if approach == "grad_zero" else 100)
        records.append(ddp)
    for phase in ("forward", "forward_backward", "step"):
        skipped = {**case("grad_zero", 2_000_000, "vocab"), "phase": phase, "env": ENV}
        skipped.update(status="skipped", reason="estimated 31.2 GB > 20.0 GB free")
        records.append(skipped)
    return records


def headline_only(records: list[dict]) -> list[dict]:
    """The headline rows alone: enough for the answer, and only two figures to draw."""
    return [record for record in records if record["sweep"] == "headline"]


def realdata_records() -> list[dict]:
    outcomes = {"full": False, "grad_zero": False, "split": True}
    return [
        {
            "approach": approach,
            "pretrained_rows": 1000,
            "new_rows": 250,
            "frozen_rows_identical": identical,
            "new_rows_changed": 250,
            "max_frozen_change": 0.0 if identical else 0.01,
            "test_accuracy": 0.71,
            "train_accuracy": 0.9,
            "seconds": 1.5,
            "epochs": 3,
            "optimizer": "AdamW",
            "weight_decay": 0.01,
            "seed": 0,
            "model": "mean_pool_linear",
            "env": ENV,
        }
        for approach, identical in outcomes.items()
    ]


NEWTOKENS_STEP_S = {"split": 0.02, "grad_zero": 0.05, "peft_trainable_tokens": 0.04}


def newtokens_records(step_s: Mapping[str, float] = NEWTOKENS_STEP_S) -> list[dict]:
    """Two models (tied GPT-2, untied Llama); grad_zero moves frozen rows under AdamW."""
    records = []
    for model, tied in (("gpt2", True), ("llama", False)):
        for approach, seconds in step_s.items():
            new_rows = 16 if tied else 32
            records.append(
                {
                    "approach": approach,
                    "model": model,
                    "device": "cpu",
                    "tied": tied,
                    "vocab_size": 2016,
                    "new_tokens": 16,
                    "embedding_dim": 64,
                    "status": "ok",
                    "reason": None,
                    "frozen_rows_identical": approach != "grad_zero",
                    "new_rows_changed": new_rows,
                    "new_rows": new_rows,
                    "loss_first": 7.1,
                    "loss_last": 6.2,
                    "step_median_s": seconds,
                    "peak_bytes": 50 * 2**20,
                    "checkpoint_bytes": 6_000,
                    "full_checkpoint_bytes": 3_000_000,
                    "merged_logits_equal": True,
                    "noisy": False,
                    "env": ENV,
                }
            )
    return records


def mutation_records() -> list[dict]:
    """Three faulty variants (two killed, one survivor with its reason) and two correct
    implementations (one false alarm), as ``python -m bench mutate`` writes them."""
    faulty = [
        ("ShiftedMask", "mask", KILLED, "sgd", "P1", None),
        ("RepeatedIdsLost", "hand-written backward", KILLED, "sgd", "P3", None),
        ("CudaAssignsRepeatedIds", "device-dependent path", SURVIVED, None, None, "no CUDA"),
    ]
    records = [
        record(
            MUTATION,
            approach=f"bench.mutate.faulty:{name}",
            role=FAULTY,
            kind=kind,
            bug=f"{name}'s bug {INJECTION}",
            outcome=outcome,
            scenario=scenario,
            property=prop,
            detail=f"{prop} violated by {name}" if prop else None,
            cells=7,
            refused_cells=0,
            violated_cells=[f"{scenario}/{prop}"] if prop else [],
            survives_because=because,
            profile="quick",
            env=ENV,
        )
        for name, kind, outcome, scenario, prop, because in faulty
    ]
    for name, outcome in (("two_lookups", HOLDS), ("summed_gradient", FALSE_ALARM)):
        alarm = outcome == FALSE_ALARM
        records.append(
            record(
                MUTATION,
                approach=f"bench.mutate.correct:{name}",
                role=CORRECT,
                bug=f"{name}, written independently",
                outcome=outcome,
                scenario="adamw" if alarm else None,
                property="P4" if alarm else None,
                detail="P4 violated by summed_gradient" if alarm else None,
                cells=236,
                refused_cells=35,
                violated_cells=["adamw/P4"] if alarm else [],
                profile="quick",
                env=ENV,
            )
        )
    return records


def write(directory: Path, filename: str, records: list[dict]) -> Path:
    """Write ``records`` as the commands do: a JSON list (``ResultsFile``'s format)."""
    path = directory / filename
    path.write_text(json.dumps(records, indent=1, default=str))
    return path


def checked(schema: ResultFileSchema, records: list[dict]) -> list[dict]:
    """``records``, each checked against ``schema``: a key the schema does not list fails here
    (through :func:`bench.common.schema.record`), so no fixture can drift from what the commands
    write. Keys a record leaves out stay out: old files lack them too."""
    for index, row in enumerate(records):
        try:
            record(schema, **row)
        except ValueError as error:
            raise AssertionError(f"{schema.filename} fixture record {index}: {error}") from None
    return records


def write_all(
    directory: Path,
    *,
    verification: list[dict] | None = None,
    results: list[dict] | None = None,
    realdata: list[dict] | None = None,
    newtokens: list[dict] | None = None,
    mutation: list[dict] | None = None,
) -> Path:
    """Write whichever of the files are given into ``directory``, each checked against its
    schema."""
    directory.mkdir(parents=True, exist_ok=True)
    given = {
        VERIFICATION: verification,
        RESULTS: results,
        REALDATA: realdata,
        NEWTOKENS: newtokens,
        MUTATION: mutation,
    }
    for schema, records in given.items():
        if records is not None:
            write(directory, schema.filename, checked(schema, records))
    return directory
