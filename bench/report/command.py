"""Build the HTML report (index.html plus every figure as PNG and SVG) from the result files alone.

Reads ``verification.json``, ``results.json``, ``realdata.json``, ``newtokens.json`` and
``mutation.json`` from
``--in`` (any subset may be present: a missing one leaves a note naming the command that writes it)
and writes a self-contained ``index.html`` to ``--out``: figures inline, styles inline, no scripts,
nothing fetched, so it opens offline in any browser. Nothing is measured here, so it rebuilds in
seconds.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Template

from bench.common.load import NOISE_RULE
from bench.common.schema import PROPERTIES
from bench.report.figures import all_figures
from bench.report.matrix import build_matrix
from bench.report.newtokens import newtokens_section
from bench.report.recommend import METHOD, recommend_all
from bench.report.sources import (
    REFERENCE_APPROACHES,
    describe_case,
    environment_table,
    format_bytes,
    format_count,
    format_seconds,
    load_sources,
    memory_phrase,
    speed_phrase,
)
from bench.report.strength import TARGET_KILL_RATE, Strength
from bench.report.tables import (
    compiled_table,
    frozen_drift_table,
    gradient_table,
    headline_table,
    html_table,
    long_lived_table,
    not_run_table,
    primitives_table,
    realdata_caption,
    realdata_table,
    retained_table,
)
from bench.report.templating import html_environment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, dest, what in (
        (
            "--in",
            "in_dir",
            "folder holding verification.json, results.json, realdata.json, newtokens.json",
        ),
        ("--out", "out_dir", "folder for index.html and the figures"),
    ):
        parser.add_argument(
            flag, dest=dest, type=Path, default=Path("reports"), help=f"{what} (default: reports)"
        )


def commands_for(in_dir: Path, out_dir: Path, profiles: list[str]) -> dict[str, str]:
    """The exact command lines that regenerate each result file and the page."""
    profile = f" --profile {profiles[0]}" if len(profiles) == 1 else ""
    return {
        "verify": f"python -m bench verify --out {in_dir}",
        "run": f"python -m bench run{profile} --out {in_dir}",
        "realdata": f"python -m bench realdata --out {in_dir}",
        "newtokens": f"python -m bench newtokens --out {in_dir}",
        "mutate": f"python -m bench mutate --out {in_dir}",
        "report": f"python -m bench report --in {in_dir} --out {out_dir}",
    }


@dataclass(frozen=True)
class BuiltReport:
    path: Path
    problems: list[str]


def template() -> Template:
    environment = html_environment("bench.report")
    # Numbers reach the template as numbers; these are the only places they become words.
    environment.filters.update(
        seconds=format_seconds, bytes=format_bytes, count=format_count, describe_case=describe_case
    )
    environment.globals.update(speed_phrase=speed_phrase, memory_phrase=memory_phrase)
    return environment.get_template("report.html.j2")


def newtokens_view(frame, out_dir: Path) -> dict:
    section = newtokens_section(frame, out_dir)
    return {**section, "table": html_table(section["table"])}


def build_report(in_dir: Path, out_dir: Path) -> BuiltReport:
    """Read the result files in ``in_dir`` and write ``out_dir/index.html`` and its figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = load_sources(in_dir)
    verification = sources["verification"].frame if sources["verification"].available else None
    results = sources["results"].frame if sources["results"].available else None
    realdata = sources["realdata"].frame if sources["realdata"].available else None
    newtokens = sources["newtokens"].frame if sources["newtokens"].available else None
    mutation = sources["mutation"].frame if sources["mutation"].available else None
    primitives = sources["primitives"].frame if sources["primitives"].available else None
    profiles = [] if results is None else sorted(results["profile"].dropna().astype(str).unique())
    tables = {}
    if results is not None:
        for name, table in (
            ("headline_table", headline_table(results)),
            ("not_run_table", not_run_table(results)),
            ("drift_table", frozen_drift_table(results)),
            ("compiled_table", compiled_table(results)),
            ("long_lived_table", long_lived_table(results)),
            ("retained_table", retained_table(results)),
            ("gradient_table", gradient_table(results)),
        ):
            tables[name] = html_table(table) if not table.empty else ""
    if primitives is not None:
        table = primitives_table(primitives)
        tables["primitives_table"] = html_table(table) if not table.empty else ""
    environment = environment_table(sources)
    page = template().render(
        built=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        in_dir=str(in_dir),
        sources=sources,
        commands=commands_for(in_dir, out_dir, profiles),
        references=list(REFERENCE_APPROACHES),
        recommendations=recommend_all(verification, results),
        method=METHOD,
        properties=PROPERTIES.items(),
        matrix=build_matrix(verification) if verification is not None else None,
        figure_sets=all_figures(results, out_dir) if results is not None else [],
        headline_table=tables.get("headline_table", ""),
        not_run_table=tables.get("not_run_table", ""),
        drift_table=tables.get("drift_table", ""),
        compiled_table=tables.get("compiled_table", ""),
        long_lived_table=tables.get("long_lived_table", ""),
        retained_table=tables.get("retained_table", ""),
        gradient_table=tables.get("gradient_table", ""),
        primitives_table=tables.get("primitives_table", ""),
        noise_rule=NOISE_RULE,
        realdata_table=html_table(realdata_table(realdata)) if realdata is not None else "",
        realdata_caption=realdata_caption(realdata) if realdata is not None else "",
        environment_table=html_table(environment) if not environment.empty else "",
        newtokens=newtokens_view(newtokens, out_dir) if newtokens is not None else None,
        strength=Strength.of(mutation.to_dict("records")) if mutation is not None else None,
        target_kill_rate=TARGET_KILL_RATE,
    )
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    problems = [s.problem for s in sources.values() if s.problem and s.path.exists()]
    return BuiltReport(path, problems)


def main(args: argparse.Namespace) -> int:
    in_dir, out_dir = Path(args.in_dir), Path(args.out_dir)
    if not in_dir.is_dir():
        print(
            f"--in: {str(in_dir)!r} is not a directory; expected the folder holding the result "
            "files (verification.json, results.json, realdata.json, newtokens.json)",
            file=sys.stderr,
        )
        return 2
    if out_dir.exists() and not out_dir.is_dir():
        print(
            f"--out: {str(out_dir)!r} is a file; expected a directory to write into",
            file=sys.stderr,
        )
        return 2
    built = build_report(in_dir, out_dir)
    for problem in built.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"report: {built.path.resolve()}")
    return 1 if built.problems else 0
