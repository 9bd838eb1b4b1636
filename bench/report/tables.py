"""The report's data tables, built with pandas and rendered to escaped HTML.

Values are formatted here (bytes as MiB/GiB, seconds as ms/s) and pandas escapes every cell, so
a string from a result file can never become markup in the page.
"""

from __future__ import annotations

import pandas as pd

from bench.common.schema import (
    COMPILED_SWEEP,
    GRADIENT_SWEEP,
    LONG_LIVED_SWEEP,
    OK,
    RETAINED_SWEEP,
)
from bench.report.sources import (
    CASE_COLUMNS,
    describe_case,
    format_bytes,
    format_count,
    format_percent,
    format_seconds,
    is_missing,
    ok_rows,
    row_keys,
)


def html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, classes="data", na_rep="–")


def yes_no(value: object) -> str:
    if is_missing(value):
        return "–"
    return "yes" if value is True else "NO"


def headline_table(results: pd.DataFrame) -> pd.DataFrame:
    """Every approach's numbers at the headline case (full step), fastest first per device and
    optimizer (a step's cost depends on the optimizer as much as on the approach)."""
    rows = ok_rows(results).sort_values(["device", "optimizer", "median_s"])
    return pd.DataFrame(
        {
            "approach": rows["approach"],
            "optimizer": rows["optimizer"],
            "device": rows["device"],
            "dtype": rows["dtype"],
            "gradients": rows["sparse"].map({True: "sparse", False: "dense"}),
            "step (median)": rows["median_s"].map(format_seconds),
            "IQR": rows["iqr_s"].map(format_seconds),
            "tokens/s": rows["tokens_per_s"].map(lambda v: "–" if is_missing(v) else f"{v:,.0f}"),
            "persistent": rows["persistent_bytes"].map(format_bytes),
            "peak": rows["peak_bytes"].map(format_bytes),
            "bound": rows["bound_s"].map(format_seconds),
            "fraction of bound": rows["fraction_of_bound"].map(format_percent),
            "with the loss": rows["fraction_of_bound_with_loss"].map(format_percent),
            "frozen rows identical": rows["frozen_rows_identical"].map(yes_no),
            "threads": rows["threads"].map(format_count),
            "busy cores before": rows["load_before"].map(format_load),
            "noisy": rows["noisy"].map(noisy_or_not),
        }
    )


def noisy_or_not(value: object) -> str:
    if is_missing(value):
        return "–"
    return "noisy" if value is True else "no"


def format_load(cores: float | None) -> str:
    return "–" if is_missing(cores) else f"{cores:.2f}"


COMPILED_MATCH = ("approach", "device", "dtype", "V", "D", "trainable_fraction", "T", "optimizer")
"""What a compiled row shares with the eager row it is compared with."""


def compiled_table(results: pd.DataFrame) -> pd.DataFrame:
    """Each compiled step beside the eager step of the same approach and case, with the ratio.

    A compiled row timed in fresh processes pairs with the fresh headline row; one timed side by
    side in one process pairs with the eager row of that process (``process`` long-lived)."""
    swept = ok_rows(results, COMPILED_SWEEP)
    compiled = swept[swept["compile"].notna()]
    headline = ok_rows(results)
    eager = pd.concat([headline[headline["process"].isna()], swept[swept["compile"].isna()]])
    eager = eager[eager["compile"].isna()]
    if compiled.empty or eager.empty:
        return pd.DataFrame()
    on = [*COMPILED_MATCH, "timed in"]
    pairs = _with_timed_in(compiled).merge(_with_timed_in(eager), on=on, suffixes=("", "_eager"))
    return pd.DataFrame(
        {
            "approach": pairs["approach"],
            "optimizer": pairs["optimizer"],
            "device": pairs["device"],
            "compiled": pairs["compile"],
            "timed in": pairs["timed in"],
            "eager step": pairs["median_s_eager"].map(format_seconds),
            "compiled step": pairs["median_s"].map(format_seconds),
            "compiled / eager": _ratio(pairs, "_eager"),
            "compiled fraction of bound": pairs["fraction_of_bound"].map(format_percent),
            "with the loss": pairs["fraction_of_bound_with_loss"].map(format_percent),
            "noisy": _either_noisy(pairs, "_eager"),
        }
    )


def _with_timed_in(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with a ``timed in`` column: one process for all, or a fresh process each."""
    return rows.assign(
        **{
            "timed in": rows["process"].map(
                lambda p: "fresh processes" if is_missing(p) else "one process"
            )
        }
    )


def long_lived_table(results: pd.DataFrame) -> pd.DataFrame:
    """Each approach's step in the one long-lived process beside its fresh-process step of the
    same case, fastest long-lived step first, with how many times the fastest it takes."""
    long_lived = ok_rows(results, LONG_LIVED_SWEEP)
    if long_lived.empty:
        return pd.DataFrame()
    pairs = _beside_fresh(long_lived, results).sort_values(["device", "median_s"])
    fastest = pairs.groupby("device")["median_s"].transform("min")
    return pd.DataFrame(
        {
            "approach": pairs["approach"],
            "device": pairs["device"],
            "long-lived step": pairs["median_s"].map(format_seconds),
            "IQR": pairs["iqr_s"].map(format_seconds),
            "× fastest": (pairs["median_s"] / fastest).map(lambda ratio: f"{ratio:.1f}×"),
            "fresh-process step": pairs["median_s_fresh"].map(format_seconds),
            "fresh IQR": pairs["iqr_s_fresh"].map(format_seconds),
            "long-lived / fresh": _ratio(pairs, "_fresh"),
            "fraction of bound": pairs["fraction_of_bound"].map(format_percent),
            "with the loss": pairs["fraction_of_bound_with_loss"].map(format_percent),
            "noisy": _either_noisy(pairs, "_fresh"),
        }
    )


def retained_table(results: pd.DataFrame) -> pd.DataFrame:
    """Each step timed in a fresh process that keeps freed memory beside the same case's fresh
    headline process, whose ``malloc`` ran as it started, with the bound fractions."""
    retained = ok_rows(results, RETAINED_SWEEP)
    if retained.empty:
        return pd.DataFrame()
    pairs = _beside_fresh(retained, results).sort_values(["device", "optimizer", "median_s"])
    return pd.DataFrame(
        {
            "approach": pairs["approach"],
            "optimizer": pairs["optimizer"],
            "device": pairs["device"],
            "freed memory kept": pairs["median_s"].map(format_seconds),
            "IQR": pairs["iqr_s"].map(format_seconds),
            "malloc as started": pairs["median_s_fresh"].map(format_seconds),
            "kept / as started": _ratio(pairs, "_fresh"),
            "fraction of bound": pairs["fraction_of_bound"].map(format_percent),
            "with the loss": pairs["fraction_of_bound_with_loss"].map(format_percent),
            "noisy": _either_noisy(pairs, "_fresh"),
        }
    )


def gradient_table(results: pd.DataFrame) -> pd.DataFrame:
    """Each step given its output's gradient beside the same approach's step that computes the
    benchmark's loss, both timed in one process, with each over the bound it is held to: the
    embedding's alone for the given gradient, the embedding's plus the loss's for the other."""
    swept = ok_rows(results, GRADIENT_SWEEP)
    given = swept[swept["loss"].notna()]
    with_loss = swept[swept["loss"].isna()]
    if given.empty or with_loss.empty:
        return pd.DataFrame()
    on = [*COMPILED_MATCH, "process", "malloc"]
    pairs = given.merge(with_loss, on=on, suffixes=("", "_loss"))
    pairs = pairs.sort_values(["device", "optimizer", "median_s"])
    return pd.DataFrame(
        {
            "approach": pairs["approach"],
            "optimizer": pairs["optimizer"],
            "device": pairs["device"],
            "step with the loss": pairs["median_s_loss"].map(format_seconds),
            "IQR": pairs["iqr_s_loss"].map(format_seconds),
            "step, gradient given": pairs["median_s"].map(format_seconds),
            "given IQR": pairs["iqr_s"].map(format_seconds),
            "given / with the loss": _ratio(pairs, "_loss"),
            "bound": pairs["bound_s"].map(format_seconds),
            "given / bound": _times(pairs["median_s"], pairs["bound_s"]),
            "with the loss / (bound + loss)": _times(
                pairs["median_s_loss"],
                (pairs["bound_bytes_loss"] + pairs["loss_bytes_loss"])
                / pairs["bandwidth_bytes_per_s_loss"],
            ),
            "noisy": _either_noisy(pairs, "_loss"),
        }
    )


def _times(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """``numerator / denominator`` as ``1.23×`` (``–`` where either is missing)."""
    return (numerator / denominator).map(
        lambda ratio: "–" if is_missing(ratio) else f"{ratio:.2f}×"
    )


def _beside_fresh(rows: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """``rows`` joined with the headline's eager row of the same case measured in a fresh
    process of its own (its columns suffixed ``_fresh``; missing where there is none)."""
    fresh = ok_rows(results)
    fresh = fresh[fresh["compile"].isna() & fresh["process"].isna()]
    return rows.merge(fresh, on=list(COMPILED_MATCH), how="left", suffixes=("", "_fresh"))


def _ratio(pairs: pd.DataFrame, suffix: str) -> pd.Series:
    """Each pair's median over its partner's (the columns suffixed ``suffix``), as ``1.23×``."""
    return _times(pairs["median_s"], pairs[f"median_s{suffix}"])


def _either_noisy(pairs: pd.DataFrame, suffix: str) -> pd.Series:
    """``noisy`` when either row of a pair is."""
    return (pairs["noisy"].eq(True) | pairs[f"noisy{suffix}"].eq(True)).map(noisy_or_not)


def frozen_drift_table(results: pd.DataFrame) -> pd.DataFrame:
    """Measured cases after which frozen rows were no longer identical (expected for controls)."""
    drifted = results["frozen_rows_identical"].map(lambda v: v is False or v == "False")
    return cases_table(results[drifted], ["approach", "sweep"])


def not_run_table(results: pd.DataFrame) -> pd.DataFrame:
    """Skipped and failed cases with their reasons."""
    return cases_table(results[results["status"] != OK], ["approach", "status", "sweep", "reason"])


def cases_table(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` and the case described in words, one row per case (its phases joined)."""
    if rows.empty:
        return pd.DataFrame()
    records = []
    for _, group in rows.groupby(row_keys(rows, [*columns, *CASE_COLUMNS]), sort=False):
        first = group.iloc[0]
        record = {column: first[column] for column in columns}
        record["case"] = describe_case(first)
        record["phases"] = ", ".join(dict.fromkeys(group["phase"]))
        records.append(record)
    return pd.DataFrame(records)


REALDATA_FORMATS = {
    "frozen_rows_identical": yes_no,
    "max_frozen_change": lambda v: "–" if is_missing(v) else f"{float(v):.3g}",
    "test_accuracy": format_percent,
    "train_accuracy": format_percent,
    "seconds": format_seconds,
}
REALDATA_CAPTION_COLUMNS = ("model", "optimizer", "weight_decay", "epochs", "seed")


def realdata_table(realdata: pd.DataFrame) -> pd.DataFrame:
    """The real-data records, one row per approach; run-wide settings go to the caption."""
    shown = [c for c in realdata.columns if c not in (*REALDATA_CAPTION_COLUMNS, "env")]
    table = realdata[shown].copy()
    for column, formatter in REALDATA_FORMATS.items():
        if column in table.columns:
            table[column] = table[column].map(formatter)
    return table.dropna(axis=1, how="all")


def realdata_caption(realdata: pd.DataFrame) -> str:
    first = realdata.iloc[0]
    parts = [
        f"{column.replace('_', ' ')} {first[column]}"
        for column in REALDATA_CAPTION_COLUMNS
        if not is_missing(first.get(column))
    ]
    return "; ".join(parts)


def primitives_table(primitives: pd.DataFrame) -> pd.DataFrame:
    """Each measured torch kernel of ``primitives.json`` beside what it is compared with: its
    median, the partner's, and how many times slower it ran on the same bytes."""
    measured = primitives[primitives["status"] == OK]
    if measured.empty:
        return pd.DataFrame()
    compared = measured[measured["compared_with"].notna()]
    pairs = compared.merge(
        measured,
        left_on=["device", "dtype", "compared_with"],
        right_on=["device", "dtype", "primitive"],
        how="left",
        suffixes=("", "_partner"),
    )
    return pd.DataFrame(
        {
            "device": pairs["device"],
            "kernel": pairs["primitive"],
            "what": pairs["what"],
            "shape": [
                f"{r:,.0f} × {w:,.0f}" for r, w in zip(pairs["rows"], pairs["width"], strict=True)
            ],
            "median": pairs["median_s"].map(format_seconds),
            "IQR": pairs["iqr_s"].map(format_seconds),
            "compared with": pairs["what_partner"],
            "its median": pairs["median_s_partner"].map(format_seconds),
            "× slower": _ratio(pairs, "_partner"),
        }
    )
