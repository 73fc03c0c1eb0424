"""``steelseg serve``'s options from the environment (``STEELSEG_<OPTION>``): every option of
its --help has one, the command line wins, and a bad value is one line naming the variable.
``service.serve.serve`` is replaced by a recorder: what it would have been called with is the
answer, and nothing loads or listens."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from steelseg.commands import cli
from steelseg.service import serve as service

# one valid value for each option of serve; the help test checks that none is missing
ENVIRONMENT = {
    "HOST": "0.0.0.0",
    "PORT": "8123",
    "API_KEY_ENV": "LINE_KEY",
    "NO_AUTH": "yes",
    "LOG_FORMAT": "json",
    "MAX_UPLOAD_MB": "5",
    "BATCH_SIZE": "8",
    "MAX_WAIT_MS": "2.5",
    "MAX_QUEUE": "16",
    "BODY_TIMEOUT": "7",
    "HEADER_TIMEOUT": "3",
    "REQUEST_TIMEOUT": "12.5",
    "TTA": "none",
    "POSTPROCESS": "post.json",
    "POST": "min_area=100 'pixel_threshold=0.4'",
    "BACKEND": "onnx",
    "DEVICE": "cpu",
    "ANY_SIZE": "true",
    "WINDOW": "800",
    "OVERLAP": "128",
    "QUIET": "1",
}


@pytest.fixture
def served(monkeypatch):
    """-> the keywords (and ``models``, ``settings``) of each serve() call the command makes."""
    for name in [n for n in os.environ if n.startswith("STEELSEG_")]:
        monkeypatch.delenv(name)  # the runner's own settings must not leak in
    calls = []
    monkeypatch.setattr(
        service, "serve", lambda models, settings, **kw: calls.append(dict(kw, models=models, settings=settings))
    )
    return calls


def test_every_option_can_come_from_the_environment(served, monkeypatch):
    for option, value in ENVIRONMENT.items():
        monkeypatch.setenv(f"STEELSEG_{option}", value)
    assert cli.main(["serve", "model.onnx"]) == 0
    (call,) = served
    settings = call["settings"]
    assert (call["host"], call["port"], call["api_key_env"], call["no_auth"]) == ("0.0.0.0", 8123, "LINE_KEY", True)
    assert (call["log_format"], call["log_level"]) == ("json", "warning")  # --quiet from $STEELSEG_QUIET
    assert (settings.max_upload_mb, settings.max_batch, settings.max_wait_ms, settings.max_queue) == (5, 8, 2.5, 16)
    assert (settings.body_timeout_s, settings.header_timeout_s, settings.request_timeout_s) == (7, 3, 12.5)
    load = call["load"]
    assert (load["tta"], load["postprocess"], load["backend"], load["device"]) == ("none", "post.json", "onnx", "cpu")
    assert load["overrides"] == ["min_area=100", "pixel_threshold=0.4"]  # words split as a shell would
    assert (load["check_size"], load["window"], load["overlap"]) == (False, 800, 128)


def test_the_help_names_no_option_the_environment_cannot_set(served, capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    in_help = set(re.findall(r"(?<![\w-])--([a-z][a-z-]+)", capsys.readouterr().out)) - {"help"}
    # --max-pixels has had its variable, every image read's cap, since before this: not re-read here
    covered = {name.lower().replace("_", "-") for name in ENVIRONMENT} | {"max-pixels"}
    assert in_help == covered, in_help ^ covered


def test_the_command_line_wins_over_the_environment(served, monkeypatch):
    for option, value in {"PORT": "8123", "LOG_FORMAT": "json", "NO_AUTH": "0", "POST": "min_area=1"}.items():
        monkeypatch.setenv(f"STEELSEG_{option}", value)
    argv = ["serve", "m.onnx", "--port", "9000", "--log-format", "text", "--no-auth", "--post", "min_area=2"]
    assert cli.main(argv) == 0
    (call,) = served
    assert (call["port"], call["log_format"], call["no_auth"]) == (9000, "text", True)
    assert call["load"]["overrides"] == ["min_area=2"]  # not appended to the environment's


def test_unset_or_empty_variables_leave_the_defaults(served, monkeypatch):
    monkeypatch.setenv("STEELSEG_PORT", "")
    assert cli.main(["serve", "m.onnx"]) == 0
    (call,) = served
    assert (call["port"], call["host"], call["no_auth"], call["log_format"]) == (8000, "127.0.0.1", False, "text")
    assert call["settings"].request_timeout_s == 60 and call["load"]["overrides"] is None


def test_max_pixels_keeps_its_own_variable(served, monkeypatch):
    monkeypatch.setenv("STEELSEG_MAX_PIXELS", "1,000,000")  # pixel_limit()'s spelling, which int() would refuse
    assert cli.main(["serve", "m.onnx"]) == 0
    assert served[0]["settings"].max_pixels == 1_000_000


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("STEELSEG_PORT", "eighty", "$STEELSEG_PORT='eighty': expected int"),
        ("STEELSEG_PORT", "70000", "$STEELSEG_PORT 70000 is not a port number"),
        ("STEELSEG_BATCH_SIZE", "0", "$STEELSEG_BATCH_SIZE must be at least 1, got 0"),
        ("STEELSEG_REQUEST_TIMEOUT", "soon", "$STEELSEG_REQUEST_TIMEOUT='soon': expected float"),
        ("STEELSEG_LOG_FORMAT", "xml", "$STEELSEG_LOG_FORMAT='xml': choose from text, json"),
        ("STEELSEG_BACKEND", "abacus", "$STEELSEG_BACKEND='abacus': choose from auto,"),
        ("STEELSEG_NO_AUTH", "maybe", "$STEELSEG_NO_AUTH='maybe': expected one of 1, true, yes, on, 0, false"),
        ("STEELSEG_QUIET", "2", "$STEELSEG_QUIET='2': expected one of"),
        ("STEELSEG_POST", "'unclosed", '$STEELSEG_POST="\'unclosed": No closing quotation'),
    ],
)
def test_a_bad_value_in_the_environment_is_one_line_naming_it(served, monkeypatch, capsys, variable, value, says):
    monkeypatch.setenv(variable, value)
    assert cli.main(["serve", "m.onnx"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("steelseg serve: error: ") and says in error, error
    assert len(error.strip().splitlines()) == 1 and served == []


def test_a_bad_variable_fails_the_real_command_in_one_line_without_a_traceback(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(cli.__file__).parents[2])}  # no STEELSEG_ of ours
    done = subprocess.run(
        [sys.executable, "-m", "steelseg", "serve", str(tmp_path / "m.onnx")],
        env={**env, "STEELSEG_MAX_QUEUE": "lots", "NO_ALBUMENTATIONS_UPDATE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == "steelseg serve: error: $STEELSEG_MAX_QUEUE='lots': expected int\n"
