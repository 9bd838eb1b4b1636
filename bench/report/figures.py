"""The report's performance figures, drawn with matplotlib (Agg) from the tidy results frame.

Every figure is saved as PNG and SVG in the output folder (to reuse in a paper or slide) and
carried inline as base64 PNG (so ``index.html`` stands alone). A figure shows one case only: rows
are split by ``case_groups`` so that nothing but the plotted variable changes along a line, and
the caption spells out the fixed case. Each approach keeps one colour and marker in every figure.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from bench.common.schema import OK
from bench.report.sources import (
    CASE_COLUMNS,
    case_groups,
    describe_case,
    environment_note,
    format_percent,
    format_seconds,
    ok_rows,
    ordered_unique,
    slug,
)

MIB = 2**20
WIDTH_IN, DPI = 11.0, 110  # about 1200 px wide inline
MARKERS = "osD^v<>pX*h"
PHASE_COLOURS = {"forward": "#4c72b0", "backward": "#dd8452", "optimizer": "#55a868"}


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str
    png_file: str
    svg_file: str
    png_base64: str


@dataclass(frozen=True)
class Style:
    colour: str
    marker: str


def approach_styles(approaches: Sequence[str]) -> dict[str, Style]:
    palette = plt.get_cmap("tab10" if len(approaches) <= 10 else "tab20").colors
    return {
        approach: Style(matplotlib.colors.to_hex(palette[i % len(palette)]), MARKERS[i % 11])
        for i, approach in enumerate(approaches)
    }


def save(figure, out_dir: Path, name: str, title: str, caption: str) -> Figure:
    """Write ``figure`` as ``name``.png and .svg under ``out_dir`` and keep the PNG inline."""
    png_buffer = io.BytesIO()
    figure.savefig(png_buffer, format="png", dpi=DPI)
    png_bytes = png_buffer.getvalue()
    (out_dir / f"{name}.png").write_bytes(png_bytes)
    figure.savefig(out_dir / f"{name}.svg", format="svg", metadata={"Date": None})
    plt.close(figure)
    return Figure(
        name,
        title,
        caption,
        f"{name}.png",
        f"{name}.svg",
        base64.b64encode(png_bytes).decode("ascii"),
    )


def caption_for(case: dict, rows: pd.DataFrame, what: str, varying: Sequence[str]) -> str:
    fixed = [c for c in (*CASE_COLUMNS, "profile") if c not in varying]
    where = environment_note(rows)
    rounds = rows["rounds"].dropna()
    timing = f" Median of {int(rounds.min())}+ timed rounds." if not rounds.empty else ""
    return f"{what}. Case: {describe_case(case, fixed)}.{timing}" + (
        f" Measured on {where}." if where else ""
    )


@dataclass(frozen=True)
class LinePlot:
    """A log–log figure of one sweep: ``x`` across, one line per approach, one panel per
    ``(column, y label, divisor)``."""

    sweep: str
    x: str
    x_label: str
    panels: tuple[tuple[str, str, float], ...]
    name: str
    title: str
    what: str


def line_figures(
    results: pd.DataFrame, out_dir: Path, styles: dict[str, Style], plot: LinePlot
) -> list[Figure]:
    """One figure of ``plot`` per fixed case."""
    figures = []
    x = plot.x
    rows = ok_rows(results, plot.sweep, "step")
    for index, (case, group) in enumerate(case_groups(rows, varying=(x,)), start=1):
        figure, axes = plt.subplots(
            1, len(plot.panels), figsize=(WIDTH_IN, 4.6), squeeze=False, layout="constrained"
        )
        for axis, (column, y_label, divisor) in zip(axes[0], plot.panels, strict=True):
            for approach in ordered_unique(group["approach"]):
                points = group[group["approach"] == approach].dropna(subset=[column, x])
                points = points.sort_values(x)
                if points.empty:
                    continue
                style = styles[approach]
                axis.plot(
                    points[x],
                    points[column] / divisor,
                    marker=style.marker,
                    color=style.colour,
                    label=approach,
                )
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xlabel(plot.x_label)
            axis.set_ylabel(y_label)
            axis.grid(True, which="both", alpha=0.3)
        legend = {}
        for axis in axes[0]:
            legend.update(zip(*reversed(axis.get_legend_handles_labels()), strict=True))
        figure.legend(
            list(legend.values()), list(legend), loc="outside right upper", title="approach"
        )
        title = f"{plot.title} ({case['device']})"
        figure.suptitle(title)
        caption = caption_for(case, group, plot.what, varying=(x,))
        name = slug(plot.name, case["device"], index)
        figures.append(save(figure, out_dir, name, title, caption))
    return figures


def headline_bars(results: pd.DataFrame, out_dir: Path, styles: dict[str, Style]) -> list[Figure]:
    """Step time per approach at the headline case, against the bound (log scale)."""
    figures = []
    rows = ok_rows(results).dropna(subset=["median_s"])
    for index, (case, group) in enumerate(case_groups(rows, varying=()), start=1):
        group = group.drop_duplicates("approach", keep="last").sort_values("median_s")
        figure, axis = plt.subplots(
            figsize=(WIDTH_IN, 1.2 + 0.42 * len(group)), layout="constrained"
        )
        positions = range(len(group))
        errors = group["iqr_s"].fillna(0) / 2
        axis.barh(
            list(positions),
            group["median_s"],
            xerr=errors,
            color=[styles[a].colour for a in group["approach"]],
        )
        axis.set_yticks(list(positions), list(group["approach"]))
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_xlabel("full training step, median (s, log scale)")
        bounds = group["bound_s"].dropna()
        if not bounds.empty:
            axis.axvline(bounds.min(), color="black", linestyle="--", label="bound")
            axis.legend(loc="lower right", fontsize=8)
        label_at = group["median_s"] + errors  # past the whisker, so it never covers the label
        for position, (_, row), x in zip(positions, group.iterrows(), label_at, strict=True):
            label = format_seconds(row["median_s"])
            if not pd.isna(row["fraction_of_bound"]):
                label += f" · {format_percent(row['fraction_of_bound'])} of bound"
            axis.annotate(
                label,
                (x, position),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        axis.set_xlim(right=label_at.max() * 8)
        axis.grid(True, axis="x", which="both", alpha=0.3)
        title = f"Headline case: step time and bound ({case['device']})"
        figure.suptitle(title)
        caption = caption_for(
            case,
            group,
            "Full training step per approach; whiskers span the IQR; the dashed line is the "
            "bound (least bytes the step must move / measured memory bandwidth); labels give "
            "each approach's fraction of that bound (100% = at the hardware limit)",
            varying=(),
        )
        figures.append(
            save(figure, out_dir, slug("headline", case["device"], index), title, caption)
        )
    return figures


def phase_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Forward, backward and optimizer seconds per approach from the three measured phases.

    Backward is (forward+backward) − forward and optimizer is step − (forward+backward); each
    phase is its own median, so a difference can come out slightly negative by noise: clipped
    at zero.
    """
    medians = rows.pivot_table(index="approach", columns="phase", values="median_s", aggfunc="last")
    needed = ["forward", "forward_backward", "step"]
    medians = medians.dropna(subset=[c for c in needed if c in medians.columns])
    if not set(needed) <= set(medians.columns) or medians.empty:
        return pd.DataFrame(columns=["forward", "backward", "optimizer"])
    table = pd.DataFrame(
        {
            "forward": medians["forward"],
            "backward": medians["forward_backward"] - medians["forward"],
            "optimizer": medians["step"] - medians["forward_backward"],
        }
    ).clip(lower=0)
    return table.loc[medians["step"].sort_values().index]


def phase_breakdown(results: pd.DataFrame, out_dir: Path) -> list[Figure]:
    figures = []
    rows = ok_rows(results, phase=None)
    for index, (case, group) in enumerate(case_groups(rows, varying=()), start=1):
        table = phase_table(group)
        if table.empty:
            continue
        figure, (absolute, share) = plt.subplots(
            1, 2, figsize=(WIDTH_IN, 1.6 + 0.42 * len(table)), sharey=True, layout="constrained"
        )
        shares = table.div(table.sum(axis=1).where(lambda s: s > 0), axis=0) * 100
        for axis, frame, label in (
            (absolute, table * 1e3, "time per step (ms)"),
            (share, shares, "share of the step (%)"),
        ):
            left = pd.Series(0.0, index=frame.index)
            for phase in frame.columns:
                axis.barh(
                    list(frame.index),
                    frame[phase].fillna(0),
                    left=left,
                    color=PHASE_COLOURS[phase],
                    label=phase,
                )
                left = left + frame[phase].fillna(0)
            axis.set_xlabel(label)
            axis.grid(True, axis="x", alpha=0.3)
        absolute.invert_yaxis()
        figure.legend(*absolute.get_legend_handles_labels(), loc="outside right upper", fontsize=9)
        title = f"Headline case: where the step's time goes ({case['device']})"
        figure.suptitle(title)
        caption = caption_for(
            case,
            group,
            "Forward; backward = (forward+backward) − forward; optimizer = full step − "
            "(forward+backward), from each phase's median (differences below zero from noise "
            "are shown as zero)",
            varying=(),
        )
        figures.append(save(figure, out_dir, slug("phases", case["device"], index), title, caption))
    return figures


def ddp_costs(results: pd.DataFrame, out_dir: Path, styles: dict[str, Style]) -> list[Figure]:
    figures = []
    rows = results[(results["phase"] == "ddp_step") & (results["status"] == OK)]
    for index, (case, group) in enumerate(case_groups(rows, varying=()), start=1):
        group = group.drop_duplicates("approach", keep="last").sort_values("median_s")
        figure, (bytes_axis, time_axis) = plt.subplots(
            1, 2, figsize=(WIDTH_IN, 1.6 + 0.42 * len(group)), sharey=True, layout="constrained"
        )
        colours = [styles[a].colour for a in group["approach"]]
        bytes_axis.barh(list(group["approach"]), group["allreduce_bytes"] / MIB, color=colours)
        bytes_axis.set_xlabel("all-reduced per step per rank (MiB)")
        time_axis.barh(list(group["approach"]), group["median_s"] * 1e3, color=colours)
        time_axis.set_xlabel("DDP training step, median (ms)")
        bytes_axis.invert_yaxis()
        for axis in (bytes_axis, time_axis):
            axis.grid(True, axis="x", alpha=0.3)
        title = f"Distributed (DDP): communication and step time ({case['device']})"
        figure.suptitle(title)
        caption = caption_for(
            case,
            group,
            "Bytes each rank all-reduces per step, measured with a DDP communication hook, and "
            "the step time under DistributedDataParallel",
            varying=(),
        )
        figures.append(save(figure, out_dir, slug("ddp", case["device"], index), title, caption))
    return figures


@dataclass(frozen=True)
class FigureSet:
    """One kind of figure: its title, the rows it needs, and the figures drawn (maybe none)."""

    title: str
    needs: str
    figures: list[Figure]


STEP_PANEL = ("median_s", "full training step, median (s)", 1.0)
V_AXIS = ("V", "V, rows in the table (log scale)")
LINE_PLOTS = (
    LinePlot(
        "vocab",
        *V_AXIS,
        (STEP_PANEL,),
        "step-time-vs-v",
        "Step time against vocabulary size",
        "Full training step (zero_grad, forward, backward, optimizer step) against V",
    ),
    LinePlot(
        "fraction",
        "trainable_fraction",
        "fraction of rows trainable (log scale)",
        (STEP_PANEL,),
        "step-time-vs-fraction",
        "Step time against the trainable fraction",
        "Full training step against the fraction of rows that train",
    ),
    LinePlot(
        "vocab",
        *V_AXIS,
        (
            ("persistent_bytes", "persistent memory (MiB)", MIB),
            ("peak_bytes", "peak memory during a step (MiB)", MIB),
        ),
        "memory-vs-v",
        "Persistent and peak memory against vocabulary size",
        "Persistent bytes (parameters, gradients, optimizer state, buffers, counted exactly) "
        "and measured peak bytes of a step, against V",
    ),
)


def all_figures(results: pd.DataFrame, out_dir: Path) -> list[FigureSet]:
    """Every performance figure the results allow, by kind (empty kinds say what they need)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    styles = approach_styles(ordered_unique(results["approach"]))
    sets = [
        FigureSet(
            plot.title,
            f"rows with sweep '{plot.sweep}', phase 'step'",
            line_figures(results, out_dir, styles, plot),
        )
        for plot in LINE_PLOTS
    ]
    return [
        *sets,
        FigureSet(
            "The headline case against the bound",
            "rows with sweep 'headline', phase 'step'",
            headline_bars(results, out_dir, styles),
        ),
        FigureSet(
            "Phase breakdown at the headline case",
            "headline rows for the phases forward, forward_backward and step",
            phase_breakdown(results, out_dir),
        ),
        FigureSet(
            "Distributed cost",
            "rows with phase 'ddp_step'",
            ddp_costs(results, out_dir, styles),
        ),
    ]
