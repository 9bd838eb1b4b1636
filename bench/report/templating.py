"""The one jinja2 setup every page of the suite is rendered with (the report, the comparison).

Autoescaping is on, so a string from a result file can never become markup, and undefined
names raise instead of rendering as nothing.
"""

from __future__ import annotations

import jinja2


def html_environment(package: str) -> jinja2.Environment:
    """An environment loading ``package``'s ``templates/`` folder."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
