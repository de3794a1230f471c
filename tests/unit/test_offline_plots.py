"""The committed page template of `dvc plots show`: the pinned Vega libraries, inlined, nothing loaded from elsewhere."""

from __future__ import annotations

import configparser

import pytest

from pipeline.errors import UserError
from tests.helpers import REPO
from tools.offline_plots import LIBRARIES, TEMPLATE, check_template, main

TEXT = (REPO / TEMPLATE).read_text(encoding="utf-8")


def test_dvc_uses_the_committed_template_and_it_holds_the_pinned_libraries(capsys):
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    assert (REPO / ".dvc" / config["plots"]["html_template"]) == REPO / TEMPLATE
    assert main(["--check"]) == 0
    assert "vega@5.20.2, vega-lite@5.2.0, vega-embed@6.18.2, as pinned" in capsys.readouterr().out


def test_a_changed_library_is_refused():
    start = TEXT.index(f'<script data-library="{LIBRARIES[0].package}@{LIBRARIES[0].version}">') + 60
    tampered = TEXT[:start] + ("x" if TEXT[start] != "x" else "y") + TEXT[start + 1 :]
    with pytest.raises(UserError, match="vega@5.20.2 differs from the pinned file"):
        check_template(tampered)


def test_a_script_from_a_cdn_is_refused():
    with pytest.raises(UserError, match="must open offline"):
        check_template(TEXT.removesuffix("</body>\n</html>\n") + '<script src="https://cdn.example/v.js"></script>')
