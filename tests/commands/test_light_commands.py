"""Light commands stay light: `score`, `synth`, `folds` and the help pages never import the
deep-learning stack, and every user mistake the package can raise is a ``SteelsegError``.

Each command runs in a fresh interpreter (this process has long since imported torch), on real
tiny inputs, and then reports which of the heavy packages ended up in ``sys.modules``.
"""

import ast
import importlib
import importlib.util
import inspect
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import steelseg
from steelseg.errors import SteelsegError

HEAVY = ("torch", "lightning", "lightning_fabric", "segmentation_models_pytorch", "timm", "torchvision")

# Runs `steelseg.commands.cli.main(argv)`, then prints what the command printed and a last line
# PROBE{"code": exit code, "heavy": heavy modules loaded}.
_PROBE = textwrap.dedent(
    """
    import json, sys
    from steelseg.commands.cli import main
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as stop:  # --help exits through argparse
        code = stop.code
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))
    print("PROBE" + json.dumps({"code": code, "heavy": heavy}))
    """
)


def _run(argv: list[str], code: str = _PROBE, printed: list[str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(argv), json.dumps(HEAVY)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    *lines, last = done.stdout.splitlines()
    assert last.startswith("PROBE"), done.stdout
    if printed is not None:
        printed.extend(lines + done.stderr.splitlines())
    return json.loads(last[len("PROBE") :])


@pytest.fixture(scope="module")
def strips(tmp_path_factory):
    """Three synthetic strips (256x1600, the only size the command makes; well under a
    second), written by a light `steelseg synth` run."""
    out = tmp_path_factory.mktemp("light") / "data"
    result = _run(["synth", str(out), "--n", "3", "--seed", "2", "--quiet"])  # seed 2: 2 of 3 have defects
    assert result == {"code": 0, "heavy": []}
    assert len(list((out / "train_images").iterdir())) == 3
    return out


def test_synth_does_not_import_torch(strips):
    # the fixture ran the command in a fresh process and checked it did not; here, that what
    # it wrote is a dataset the file layer can open
    from steelseg.files.datasets import open_dataset

    dataset = open_dataset(strips)
    assert len(dataset) == 3 and dataset.image_shapes() == [(256, 1600)] * 3


def test_folds_does_not_import_torch(strips, tmp_path):
    result = _run(["folds", str(strips), "--out", str(tmp_path / "folds.csv"), "--k", "2", "--quiet"])
    assert result == {"code": 0, "heavy": []}
    rows = (tmp_path / "folds.csv").read_text().splitlines()
    assert rows[0].startswith("ImageId,Fold") and len(rows) == 1 + 3


def test_score_does_not_import_torch(strips):
    truth = str(strips / "train.csv")
    # synth's truth lists defects only, so as a prediction it lacks the clean strip: allowed
    # (and warned about) with --allow-missing
    argv = [
        "score",
        truth,
        truth,
        "--shape",
        "256",
        "1600",
        "--images",
        str(strips / "train_images"),
        "--allow-missing",
    ]
    printed = []
    assert _run(argv, printed=printed) == {"code": 0, "heavy": []}
    # it really scored: the truth against itself is perfect, over the folder's 3 images
    mean, images = [line for line in printed if line.startswith(("mean", "(3 images"))]
    assert mean.split()[:2] == ["mean", "1.0000"] and images.startswith("(3 images")
    assert any(line.startswith("steelseg score: warning:") for line in printed)


def test_convert_does_not_import_torch(strips, tmp_path):
    out = tmp_path / "masks"
    assert _run(["convert", str(strips), "--to", "masks", str(out), "--quiet"]) == {"code": 0, "heavy": []}
    assert len(list((out / "masks").glob("*.png"))) == 3 and (out / "classes.json").is_file()


@pytest.mark.parametrize("argv", [["--help"], ["score", "--help"], ["train", "--help"], ["predict", "--help"]])
def test_help_does_not_import_torch(argv):
    assert _run(argv) == {"code": 0, "heavy": []}


def test_a_failing_command_still_does_not_import_torch(tmp_path):
    # the error path (a SteelsegError caught by the CLI) must be light as well
    missing = str(tmp_path / "missing.csv")
    printed = []
    assert _run(["score", missing, missing], printed=printed) == {"code": 1, "heavy": []}
    assert printed == [f"steelseg score: error: {missing}: annotation file not found"]


def test_the_command_table_imports_no_library_module():
    # every command imports its library inside run(): the table itself loads no numpy, let alone torch
    code = textwrap.dedent(
        """
        import json, sys
        import steelseg.commands.cli
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("steelseg", "numpy", *json.loads(sys.argv[2])))
        print("PROBE" + json.dumps({"code": 0, "heavy": loaded}))
        """
    )
    loaded = _run([], code)["heavy"]
    assert "steelseg.commands.cli" in loaded  # the probe saw the import
    assert [m for m in loaded if not m.startswith("steelseg.commands")] == [
        "steelseg",
        "steelseg.errors",
        "steelseg.version",
    ]


def test_predictor_is_importable_without_torch():
    code = textwrap.dedent(
        """
        import json, sys
        import steelseg
        import steelseg.inference.predictor as module
        assert steelseg.Predictor is module.Predictor
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[2]))
        print("PROBE" + json.dumps({"code": 0, "heavy": heavy}))
        """
    )
    assert _run([], code) == {"code": 0, "heavy": []}


def test_package_exports_the_predictor_lazily():
    from steelseg.inference.predictor import Predictor

    assert steelseg.Predictor is Predictor
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        steelseg.Nope  # noqa: B018


# Exceptions named *Error that are deliberately not user mistakes: {qualified name: why}.
# (None so far: a bug is a plain Python exception, not a class of this package.)
NOT_USER_ERRORS: dict[str, str] = {}
# `python -m steelseg` runs the CLI when imported, so its classes are read from its source.
ENTRY_POINTS = {"steelseg.__main__"}


def _package_errors() -> dict[str, type | None]:
    """{qualified name: class} of every class named *Error defined in a module of the package
    (None for one found only in the source of an entry point)."""
    found = {}
    for info in pkgutil.walk_packages(steelseg.__path__, prefix="steelseg."):
        if info.name in ENTRY_POINTS:
            tree = ast.parse(Path(importlib.util.find_spec(info.name).origin).read_text())
            classes = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
            found |= {f"{info.name}.{name}": None for name in classes if name.endswith("Error")}
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and name.endswith("Error") and value.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_error_of_the_package_is_a_steelseg_error():
    from steelseg.inference.predictor import InputError  # defined where the predictor's helpers live

    errors = _package_errors()
    # the walk must reach the modules it is meant to check (else this test passes on nothing)
    assert {
        "steelseg.config.ConfigError",
        "steelseg.files.images.ImageError",
        "steelseg.files.datasets.DatasetError",
        "steelseg.files.rundir.RunDirError",
        f"{InputError.__module__}.InputError",
        "steelseg.errors.UsageError",
        "steelseg.service.serve.ServiceError",
    } <= set(errors)
    strays = [
        name
        for name, cls in errors.items()
        if (cls is None or not issubclass(cls, SteelsegError)) and name not in NOT_USER_ERRORS
    ]
    assert strays == []
