"""The report's section on new tokens in a language model: its table, its figure, its answer.

The answer itself is computed by :mod:`bench.report.newtokens_answer` (torch-free) from the records;
this module only lays the records out and draws step time and peak memory by approach, one panel
pair per model, so each model's approaches are compared on the same axes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from bench.common.schema import OK
from bench.report.figures import WIDTH_IN, Figure, approach_styles, save
from bench.report.newtokens_answer import newtokens_answers
from bench.report.sources import (
    format_bytes,
    format_seconds,
    is_missing,
    ordered_unique,
    slug,
)
from bench.report.tables import noisy_or_not, yes_no


def newtokens_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, device, approach), fastest first within each model."""
    rows = frame.sort_values(["model", "device", "step_median_s"], na_position="last")
    return pd.DataFrame(
        {
            "model": rows["model"],
            "tied": rows["tied"].map(yes_no),
            "device": rows["device"],
            "approach": rows["approach"],
            "status": rows["status"],
            "frozen rows identical (both layers)": rows["frozen_rows_identical"].map(yes_no),
            "new rows changed": [
                "–" if is_missing(changed) else f"{int(changed)} of {int(total)}"
                for changed, total in zip(rows["new_rows_changed"], rows["new_rows"], strict=True)
            ],
            "loss first → last": [
                "–" if is_missing(first) else f"{first:.3f} → {last:.3f}"
                for first, last in zip(rows["loss_first"], rows["loss_last"], strict=True)
            ],
            "step (median)": rows["step_median_s"].map(format_seconds),
            "peak": rows["peak_bytes"].map(format_bytes),
            "checkpoint": rows["checkpoint_bytes"].map(format_bytes),
            "whole model": rows["full_checkpoint_bytes"].map(format_bytes),
            "merged logits equal": rows["merged_logits_equal"].map(yes_no),
            "noisy": rows["noisy"].map(noisy_or_not),
            "reason": rows["reason"].fillna(""),
        }
    )


def newtokens_figures(frame: pd.DataFrame, out_dir: Path) -> list[Figure]:
    """Step time and peak memory by approach, one figure per (model, device)."""
    measured = frame[(frame["status"] == OK) & frame["step_median_s"].notna()]
    styles = approach_styles(ordered_unique(frame["approach"]))
    figures = []
    for (model, device), group in measured.groupby(["model", "device"], sort=False):
        group = group.sort_values("step_median_s")
        figure, (time_axis, memory_axis) = plt.subplots(
            1, 2, figsize=(WIDTH_IN, 1.4 + 0.4 * len(group)), sharey=True, layout="constrained"
        )
        positions = list(range(len(group)))
        colours = [styles[a].colour for a in group["approach"]]
        time_axis.barh(positions, group["step_median_s"] * 1e3, color=colours)
        time_axis.set_xlabel("training step, median (ms)")
        memory_axis.barh(positions, group["peak_bytes"].fillna(0) / 2**20, color=colours)
        memory_axis.set_xlabel("peak memory during the steps (MiB)")
        time_axis.set_yticks(positions, list(group["approach"]))
        time_axis.invert_yaxis()
        for axis in (time_axis, memory_axis):
            axis.grid(True, axis="x", alpha=0.3)
        first = group.iloc[0]
        title = f"New tokens in {model} ({device})"
        figure.suptitle(title)
        caption = (
            f"{model}: {'tied' if first['tied'] else 'untied'} output layer, vocabulary "
            f"{int(first['vocab_size']):,} with {int(first['new_tokens'])} new tokens, width "
            f"{int(first['embedding_dim'])}. Only the new tokens' rows train (AdamW); PEFT runs "
            "through get_peft_model."
        )
        figures.append(save(figure, out_dir, slug("newtokens", model, device), title, caption))
    return figures


def newtokens_section(frame: pd.DataFrame, out_dir: Path) -> dict:
    """Everything the template shows: answers (numbers), the table (text), the figures."""
    records = frame.to_dict("records")
    return {
        "answers": newtokens_answers(records),
        "table": newtokens_table(frame),
        "figures": newtokens_figures(frame, out_dir),
    }
