"""Fill the page template; everything shown comes from the arguments."""

from __future__ import annotations

import base64

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_ENV = Environment(
    loader=PackageLoader("pipeline.report", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,  # a missing value fails the stage instead of leaving a blank
    trim_blocks=True,
    lstrip_blocks=True,
)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_report(**context: object) -> str:
    return _ENV.get_template("index.html.j2").render(**context)
