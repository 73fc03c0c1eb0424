"""Matplotlib is for the report pages only: building the CLI, predicting and serving never load it."""

import subprocess
import sys

MODULES = [
    "steelseg.commands.cli",
    "steelseg.reports.report",
    "steelseg.reports.eda",
    "steelseg.reports.curves",
    "steelseg.inference.predictor",
]


def test_cli_and_prediction_modules_do_not_import_matplotlib():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "import steelseg.commands.cli as cli\ncli.build_parser()\n"
        + "from steelseg.reports import curves, eda, report\n"
        + "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
