"""The comparison as one self-contained HTML file: styles inline, no scripts, nothing fetched.

It renders the same :class:`~bench.compare.tables.ComparisonView` as the printed text, so a CI
artefact shows exactly what the log said, with the findings highlighted.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Template

from bench.compare.tables import ComparisonView
from bench.report.templating import html_environment

TEMPLATE = "compare.html.j2"


def template() -> Template:
    environment = html_environment("bench.compare")
    return environment.get_template(TEMPLATE)


def write_page(comparison_view: ComparisonView, path: Path) -> Path:
    """Write the page to ``path`` (its folder is created) and return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template().render(view=comparison_view), encoding="utf-8")
    return path
