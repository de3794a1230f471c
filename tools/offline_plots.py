"""The page template `dvc plots show` fills, with Vega inlined: the plots open with no network.

DVC's own page loads vega, vega-lite and vega-embed from a CDN. `.dvc/config` points
`plots.html_template` at `.dvc/plots/offline.html` instead, which this tool writes: the same
three libraries, at the versions DVC 3.67 asks for, inlined with their licences, each checked
against the npm registry's sha512 integrity of its package and the sha256 of the file itself.
The template is committed, so a clone needs no network; only rewriting it does (npm).

Run:    uv run python -m tools.offline_plots            (fetch with `npm pack`, verify, write)
        uv run python -m tools.offline_plots --check    (verify the committed template; no network)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import NamedTuple

from pipeline.errors import UserError, run_cli
from pipeline.repo import repo_root

TEMPLATE = Path(".dvc/plots/offline.html")


class Library(NamedTuple):
    package: str
    version: str  # the one dvc_render's page asks the CDN for
    integrity: str  # the npm registry's sha512 of the package tarball
    member: str  # the file inlined, inside the tarball
    sha256: str  # of that file


LIBRARIES = (
    Library(
        "vega",
        "5.20.2",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
        "package/build/vega.min.js",
        "4794d0169cb1f3ebad8117fe98ba5bd652dd725905ec0384e832391dbccb03be",
    ),
    Library(
        "vega-lite",
        "5.2.0",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
        "package/build/vega-lite.min.js",
        "d73157451b3978015ab31dacd55ff90d986ab8663fc0abed50f97b3cd90002cb",
    ),
    Library(
        "vega-embed",
        "6.18.2",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
        "package/build/vega-embed.min.js",
        "1ba9826431ddc9805e815ad92acc811c819f2bfd32bda2a128b8c4b5070fab5e",
    ),
)

# dvc_render fills {plot_divs} (and {refresh_tag}); there is no {scripts}, so it adds no CDN script.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""
SCRIPT = re.compile(r'<script data-library="([^"]+)">\n(.*?)\n</script>', re.S)


def _script(library: Library, code: str, licence: str) -> str:
    name = f"{library.package}@{library.version}"
    return (
        f"<!-- {name} ({library.member.removeprefix('package/')}, sha256 {library.sha256}), "
        f"under its licence:\n{licence.replace('--', '- -')}\n-->\n"
        f'<script data-library="{name}">\n{code}\n</script>'
    )


def _sha512_integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch_library(library: Library, folder: Path) -> tuple[str, str]:
    """The library's file and licence, from the npm registry, after both checksums."""
    spec = f"{library.package}@{library.version}"
    try:
        subprocess.run(["npm", "pack", spec, "--pack-destination", str(folder)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise UserError(
            f"npm could not fetch {spec} ({error}); install npm or reach its registry, then retry"
        ) from None
    tarball = folder / f"{library.package}-{library.version}.tgz"
    if _sha512_integrity(tarball) != library.integrity:
        raise UserError(f"{tarball.name}: not the published package (its sha512 differs); nothing written")
    with tarfile.open(tarball) as archive:
        code = archive.extractfile(library.member).read()
        licence = archive.extractfile("package/LICENSE").read().decode()
    if hashlib.sha256(code).hexdigest() != library.sha256:
        raise UserError(f"{spec}: {library.member} differs from the pinned file (sha256); nothing written")
    return code.decode(), licence


def render_template(files: dict[str, tuple[str, str]]) -> str:
    scripts = "\n".join(_script(lib, *files[lib.package]) for lib in LIBRARIES)
    return PAGE.format(scripts=scripts)


def check_template(text: str) -> None:
    """Every library inlined, each byte for byte the pinned file; no script loaded from elsewhere."""
    found = {name: code for name, code in SCRIPT.findall(text)}
    for library in LIBRARIES:
        name = f"{library.package}@{library.version}"
        if name not in found:
            raise UserError(f"{TEMPLATE}: {name} is not inlined; run `uv run python -m tools.offline_plots`")
        if hashlib.sha256(found[name].encode()).hexdigest() != library.sha256:
            raise UserError(
                f"{TEMPLATE}: {name} differs from the pinned file; run `uv run python -m tools.offline_plots`"
            )
    if re.search(r"<(script|link)[^>]+(src|href)=", text):
        raise UserError(f"{TEMPLATE}: loads a script or stylesheet from elsewhere; it must open offline")
    if "{plot_divs}" not in text:
        raise UserError(f"{TEMPLATE}: has no {{plot_divs}}, where DVC puts the plots")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify the committed template; fetch nothing")
    args = parser.parse_args(argv)
    path = repo_root() / TEMPLATE
    if args.check:
        check_template(path.read_text(encoding="utf-8"))
        print(f"offline_plots: {TEMPLATE} holds {', '.join(f'{x.package}@{x.version}' for x in LIBRARIES)}, as pinned")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        files = {library.package: fetch_library(library, Path(folder)) for library in LIBRARIES}
    text = render_template(files)
    check_template(text)
    path.write_text(text, encoding="utf-8")
    print(f"offline_plots: wrote {TEMPLATE} ({len(text.encode()) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
