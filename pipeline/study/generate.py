"""Each study's dvc.yaml, generated from its params: one definition, no hand copies.

A study is the repository root (the main study: params.yaml) or a folder
studies/<name>/ whose params.yaml is an overlay: only the keys it changes, laid
over the root params.yaml. For every study this writes its dvc.yaml:

    preflight   (main study only) every study's params and dvc.yaml checked, before anything else
    stage-code  (main study only) the code of fetch, prepare, choose and report, a digest each
    fetch       (main study only) one stage per known dataset; every study shares data/raw/
    prepare     one stage per dataset of the study's matrix
    train-code  the cells' code, one digest
    train       one stage per cell, train@<cell name>, with the cell as its one argument
    sweep       (a study with `sweep:`) one stage per configuration x rate x sweep seed,
                sweep@<configuration>-learning_rate_<rate>-<seed>, into results/sweep/cells/
    choose      (likewise) the rate of each configuration, from the sweep: results/sweep/chosen.json
    tuned       (likewise) one stage per cell, tuned@<cell name>, at its configuration's chosen
                rate (chosen.json is a dependency), into results/tuned/
    report      the study's page (with `sweep:` it also reads the sweep cells and writes reports/sweep.csv)

A study under studies/ marked `study.runs_with_main: true` has no dvc.yaml of its own:
its stages go into the root dvc.yaml, named `<study>-<stage>` (`article000-train@<cell>`),
each with `wdir: studies/<study>`, so that a plain `dvc repro` runs it and its outputs
still land in its folder. DVC allows an output in one dvc.yaml only: one place each.

Each stage depends on its code, on the params sections it reads, and on its data. Its code is one
digest file: results/code/<kind>.json, written by the main pipeline's stage stage-code, for fetch,
prepare, choose and report (the modules their entry point imports), and each study's
results/code/train.json, written by its stage train-code, for the cells (the modules that decide
their outputs): pipeline/study/code.py. The digest stages and preflight depend on the folder
pipeline/ whole, so that DVC shows one column for the code where it showed one per module. The
report stage also depends on the params files themselves: any edit to them re-runs it (seconds),
and it refuses to run from a dvc.yaml those params no longer give, naming the command that fixes it. The command that writes the files is
pipeline/dvcfile.py.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from ruamel.yaml import YAML

from pipeline.data.datasets import DATASETS
from pipeline.errors import UserError
from pipeline.repo import repo_root
from pipeline.study.cells import expand_matrix, expand_sweep
from pipeline.study.code import STAGE_ENTRIES
from pipeline.study.params import load_params

STUDIES = "studies"
GENERATOR = "uv run python -m pipeline.dvcfile"
FINDINGS = "reports/findings.json"  # a study's answers, read by the main page when the study runs with it
CHOSEN = "results/sweep/chosen.json"  # the learning rate chosen per configuration, in a study with `sweep:`
SWEEP_CELLS = "results/sweep/cells"  # one folder per sweep run, read by choose and by the report
SWEEP_CSV = "reports/sweep.csv"  # the report's table of the sweep runs
TRAIN_CODE = "results/code/train.json"  # the cells' code as one digest (pipeline/train_code.py)
STAGE_CODE = "results/code"  # <kind>.json: the code of every other kind of stage (pipeline/stage_code.py)
# The digest stages' one code dependency: the folder, one `dvc exp show` column (.dvcignore leaves bytecode out).
CODE = "pipeline"
PREFLIGHT = "results/preflight.json"  # every study checked before anything downloads (pipeline/preflight.py)
# DVC's views of every study, in two folders at the root that git keeps (each holds a README that
# .dvcignore hides from DVC): metrics/<study>.json, the headline answers, and curves/<study>_<dataset>.csv,
# the validation curves. The root dvc.yaml declares each folder once, as top-level metrics and plots: DVC
# reads whatever files are there, so a study that has not run adds nothing, where a file declared on
# its own but not yet written would make every `dvc metrics show` and `dvc plots show` warn.
METRICS_DIR = "metrics"
CURVES_DIR = "curves"
MAIN_VIEW = "main"  # the main study's name in those folders; another study's is its folder's name
PLOT_TEMPLATE = "by_configuration"  # .dvc/plots/by_configuration.json: a line per configuration


def study_dirs(root: Path) -> list[Path]:
    """The main study, then every overlay under studies/, by name."""
    return [root, *sorted(p.parent for p in (root / STUDIES).glob("*/params.yaml"))]


def runs_with_main(root: Path, study: Path) -> bool:
    """Whether a study's stages go into the root dvc.yaml (the root itself: no, it is the main study)."""
    if study.resolve() == root.resolve():
        return False
    return load_params(*(study / f for f in params_files(root, study))).study.runs_with_main


def has_own_pipeline(root: Path, study: Path) -> bool:
    """The main study and every study not marked `runs_with_main` have a dvc.yaml of their own."""
    return not runs_with_main(root, study)


def params_files(root: Path, study: Path) -> list[str]:
    """The files a study's settings come from, relative to its folder: the base, then its overlay."""
    if study.resolve() == root.resolve():
        return ["params.yaml"]
    return [os.path.relpath(root / "params.yaml", study), "params.yaml"]


# -- the stages ---------------------------------------------------------------------------------


def _leaves(section: object, prefix: str) -> list[str]:
    """The dotted keys of a section's values (a list is one value): `train.optimizer.name`, ..."""
    if not isinstance(section, dict) or not section:
        return [prefix]
    return [leaf for key, value in section.items() for leaf in _leaves(value, f"{prefix}.{key}")]


def _not_overridden(base: dict, overlay: dict, section: str) -> list[str]:
    """The base file's keys of `section` that the overlay leaves as they are: each, as a dotted key."""
    theirs = _leaves(overlay[section], section)
    return [
        key
        for key in _leaves(base[section], section)
        if not any(key == o or key.startswith(o + ".") or o.startswith(key + ".") for o in theirs)
    ]


def _params_deps(contents: dict[str, dict], wanted: list[str] | None) -> list:
    """DVC params entries: per file, the wanted sections it has (None: every section of it).

    Only keys a file has: DVC refuses a params key missing from its file. Where an overlay sets part
    of a section, the base file's entry lists only the keys the overlay does not set (DVC takes dotted
    keys), so that `dvc exp run -S train.epochs=20` leaves alone a study that sets its own epochs.
    """
    entries: list = []
    names = list(contents)
    for name, content in contents.items():
        overlay = contents[names[-1]] if name != names[-1] else {}
        keys: list[str] = []
        for section in content:
            if wanted is not None and section not in wanted:
                continue
            keys += _not_overridden(content, overlay, section) if section in overlay else [section]
        if keys:  # the study's own params.yaml is DVC's default file: plain keys
            entries += keys if name == "params.yaml" else [{name: keys}]
    return entries


def preflight_stage(root: Path) -> dict:
    """The main pipeline's first stage, upstream of fetch and so of every study's stages: every params file
    checked, and every dvc.yaml compared with what they generate, before anything downloads or is deleted.

    DVC refuses a dvc.yaml as a dependency: a hand edit of one is caught by the report stage instead.
    """
    files = [(study / "params.yaml").relative_to(root).as_posix() for study in study_dirs(root)]
    return {
        "cmd": f"python -m pipeline.preflight --out {PREFLIGHT}",
        "deps": [CODE, *files],
        "outs": [PREFLIGHT],
    }


def pipeline_definition(root: Path, study: Path) -> dict:
    files = params_files(root, study)
    params = load_params(*(study / f for f in files))
    cells = expand_matrix(params)
    contents = {name: YAML(typ="safe", pure=True).load((study / name).read_text(encoding="utf-8")) for name in files}
    up = os.path.relpath(root, study)
    up = "" if up == "." else up + "/"
    view = MAIN_VIEW if not up else study.name
    with_params = " ".join(f"--params {f}" for f in files)

    def code(kind: str) -> str:
        return f"{up}{STAGE_CODE}/{kind}.json"

    stages: dict = {}
    if not up:
        stages["preflight"] = preflight_stage(root)
        # Every study's fetch, prepare, choose and report depend on these digests (preflight first, as below).
        stages["stage-code"] = {
            "cmd": f"python -m pipeline.stage_code --out {STAGE_CODE}",
            "deps": [CODE, PREFLIGHT],
            "outs": [code(kind) for kind in STAGE_ENTRIES],
        }
        stages["fetch"] = {
            "foreach": sorted(DATASETS),
            "do": {
                "cmd": "python -m pipeline.fetch --dataset ${item} --out data/raw/${item}",
                "deps": [code("fetch"), PREFLIGHT],
                "outs": ["data/raw/${item}"],
            },
        }
    datasets = list(dict.fromkeys(cell.dataset for cell in cells))
    stages["prepare"] = {
        "foreach": datasets,
        "do": {
            "cmd": f"python -m pipeline.prepare {with_params} --dataset ${{item}} "
            f"--raw {up}data/raw/${{item}} --out data/prepared/${{item}}",
            "deps": [code("prepare"), f"{up}data/raw/${{item}}"],
            "params": _params_deps(contents, ["prepare"]),
            "outs": ["data/prepared/${item}"],
        },
    }
    # The cell stages depend on one digest of the code that decides their outputs rather than on each
    # module: see pipeline/train_code.py (it keeps dvc.lock small and a no-op `dvc repro` quick).
    stages["train-code"] = {
        "cmd": f"python -m pipeline.train_code --out {TRAIN_CODE}",
        # preflight: every stage of every study lies downstream of the check (its output never changes the digest)
        "deps": [up + CODE, up + PREFLIGHT],
        "outs": [TRAIN_CODE],
    }
    stages["train"] = {
        "foreach": {cell.name: {"dataset": cell.dataset} for cell in cells},
        "do": {
            "cmd": f"python -m pipeline.train {with_params} --cell ${{key}} "
            "--data data/prepared/${item.dataset} --out results/cells/${key}",
            "deps": [TRAIN_CODE, "data/prepared/${item.dataset}"],
            "params": _params_deps(contents, ["train"]),
            "outs": ["results/cells/${key}"],
        },
    }
    tuned: list[str] = []
    if params.sweep is not None:
        stages["sweep"] = {
            "foreach": {cell.name: {"dataset": cell.dataset} for cell in expand_sweep(params)},
            "do": {
                "cmd": f"python -m pipeline.train {with_params} --sweep-cell ${{key}} "
                "--data data/prepared/${item.dataset} --out results/sweep/cells/${key}",
                "deps": [TRAIN_CODE, "data/prepared/${item.dataset}"],
                "params": _params_deps(contents, ["train", "sweep"]),
                "outs": ["results/sweep/cells/${key}"],
            },
        }
        stages["choose"] = {
            "cmd": f"python -m pipeline.choose {with_params} --sweep results/sweep/cells --out {CHOSEN}",
            "deps": [code("choose"), "results/sweep/cells"],
            "params": _params_deps(contents, ["matrix", "sweep"]),
            "outs": [CHOSEN],
        }
        stages["tuned"] = {
            "foreach": {cell.name: {"dataset": cell.dataset} for cell in cells},
            "do": {
                "cmd": f"python -m pipeline.train {with_params} --cell ${{key}} --learning-rate-from {CHOSEN} "
                "--data data/prepared/${item.dataset} --out results/tuned/${key}",
                "deps": [TRAIN_CODE, "data/prepared/${item.dataset}", CHOSEN],
                "params": _params_deps(contents, ["train"]),
                "outs": ["results/tuned/${key}"],
            },
        }
        tuned = [f"--sweep {SWEEP_CELLS}", "--tuned results/tuned", f"--chosen {CHOSEN}"]
    stages["report"] = {
        # dvc.lock is read for its digest (provenance), not a dependency: see pipeline/report/lockfile.py.
        "cmd": " ".join(
            [
                f"python -m pipeline.report {with_params} --cells results/cells",
                *tuned,
                "--lock dvc.lock --out reports",
                f"--metrics {up}{METRICS_DIR}/{view}.json --curves-prefix {up}{CURVES_DIR}/{view}",
            ]
        ),
        # The params files whole: a section an overlay gains is no params dep of any stage until the
        # pipeline is regenerated; this makes the report run, find the pipeline stale and say so.
        "deps": [
            code("report"),
            *files,
            "results/cells",
            *([SWEEP_CELLS, "results/tuned", CHOSEN] if tuned else []),
        ],
        "params": _params_deps(contents, None),  # it loads the whole study: every section
        "outs": [
            "reports/index.html",
            "reports/results.csv",
            FINDINGS,
            *([SWEEP_CSV] if tuned else []),
            # DVC's views: plain outputs, kept out of the cache so that git holds them and `dvc metrics diff`
            # compares commits; declared as metrics and plots once, by folder, in the root dvc.yaml
            {f"{up}{METRICS_DIR}/{view}.json": {"cache": False}},
            *({f"{up}{CURVES_DIR}/{view}_{dataset}.csv": {"cache": False}} for dataset in datasets),
        ],
    }
    return {"stages": stages}


def root_definition(root: Path) -> dict:
    """The main study's stages, then those of every study marked `runs_with_main`, prefixed and in its folder."""
    definition = {
        **pipeline_definition(root, root),
        "metrics": [METRICS_DIR],
        "plots": [{CURVES_DIR: {"template": PLOT_TEMPLATE, "x": "step", "y": "val_accuracy"}}],
    }
    for study in study_dirs(root)[1:]:
        if not runs_with_main(root, study):
            continue
        where = study.relative_to(root).as_posix()
        for name, stage in pipeline_definition(root, study)["stages"].items():
            if "do" in stage:
                stage = {**stage, "do": {"wdir": where, **stage["do"]}}
            else:
                stage = {"wdir": where, **stage}
            if name == "report":  # its runs are recorded in the root dvc.lock, not one of its own
                stage["cmd"] = stage["cmd"].replace(
                    "--lock dvc.lock", f"--lock {os.path.relpath(root, study)}/dvc.lock"
                )
            definition["stages"][f"{study.name}-{name}"] = stage
        # The main page shows the claims each such study answers: its findings.json, a dependency.
        report = definition["stages"]["report"]
        report["cmd"] = report["cmd"].replace(" --lock ", f" --claims {where}/{FINDINGS} --lock ", 1)
        report["deps"].append(f"{where}/{FINDINGS}")
    return definition


def render(root: Path, study: Path) -> str:
    is_root = study.resolve() == root.resolve()
    if not is_root and runs_with_main(root, study):
        raise UserError(
            f"{study.name} runs with the main study (study.runs_with_main): its stages are in the root dvc.yaml"
        )
    name = "the main study" if is_root else f"the study {study.name}"
    marked = [s.name for s in study_dirs(root)[1:] if is_root and runs_with_main(root, s)]
    also = f" and the studies run with it ({', '.join(marked)})" if marked else ""
    header = (
        f"# Generated for {name}{also} from {' + '.join(params_files(root, study))} by `{GENERATOR}`.\n"
        "# Do not edit: change the params, then run that command. A stage refuses to run from an\n"
        "# out-of-date copy, and a test fails if one is committed.\n"
    )
    buffer = io.StringIO()
    yaml = YAML()
    yaml.width = 4096  # one command per line
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.dump(root_definition(root) if is_root else pipeline_definition(root, study), buffer)
    return header + buffer.getvalue()


def ensure_current(study: Path | None = None) -> None:
    """Inside a DVC stage: refuse to run from a dvc.yaml that the study's params no longer give."""
    if "DVC_STAGE" not in os.environ:
        return
    study = (study or Path.cwd()).resolve()
    root = repo_root(study)
    path = study / "dvc.yaml"
    if not path.is_file():  # a study run with the main one: its stages are in the root dvc.yaml
        study, path = root, root / "dvc.yaml"
    expected = render(root, study) if has_own_pipeline(root, study) else None
    if path.is_file() and path.read_text(encoding="utf-8") != expected:
        raise UserError(
            f"{path} is out of date with the study's params (a changed matrix or overlay); "
            f"run `{GENERATOR}` in {repo_root(study)}, then `dvc repro` again"
        )
