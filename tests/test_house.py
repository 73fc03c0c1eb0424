"""The house rules that a reader can check by counting (docs/style.md): the test tree mirrors
the package, no module over MAX_MODULE_LINES lines, no function over MAX_FUNCTION_LINES lines,
and no ``# fmt: skip`` without a reason. Each failure lists every offender with where it is."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "steelseg"
TESTS = ROOT / "tests"
CROSS_CUTTING = {"hardening"}  # tests of every stage at once: bad input, crashes
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
FORMATTED = ("src", "tests", "benchmarks")


def _folders(root: Path) -> set[str]:
    """Every folder under ``root`` (bar caches and hidden ones), as a posix path relative to it."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_dir() and not any(part.startswith((".", "__pycache__")) for part in path.relative_to(root).parts)
    }


def _packages() -> set[str]:
    """The package's stages: its top-level sub-packages (a nested one, inference/backends,
    belongs to its stage)."""
    return {path.parent.name for path in PACKAGE.glob("*/__init__.py")}


def _python_files(*tops: str) -> list[Path]:
    return sorted(path for top in tops for path in (ROOT / top).rglob("*.py") if "__pycache__" not in path.parts)


def _where(path: Path, line: int | None = None) -> str:
    where = path.relative_to(ROOT).as_posix()
    return where if line is None else f"{where}:{line}"


# --- the test tree mirrors the package ------------------------------------------------------


def test_the_house_has_the_stages_this_test_names():
    # the checks below must see the package as it is, else they pass on nothing
    assert {"core", "files", "models", "training", "inference", "service", "reports", "pipeline", "commands"} <= (
        _packages()
    )


def test_every_stage_of_the_package_has_its_test_folder():
    missing = sorted(f"tests/{name}/ (for src/steelseg/{name}/)" for name in _packages() - _folders(TESTS))
    assert missing == [], "stages without a test folder:\n" + "\n".join(missing)


def test_every_test_folder_is_a_stage_of_the_package_or_cross_cutting():
    allowed = _packages() | CROSS_CUTTING
    strays = sorted(f"tests/{folder}/" for folder in _folders(TESTS) if folder.split("/")[0] not in allowed)
    message = f"test folders that mirror no stage of the package (allowed: {', '.join(sorted(allowed))}):\n"
    assert strays == [], message + "\n".join(strays)


# --- sizes ------------------------------------------------------------------------------------


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_is_over_the_line_limit():
    counts = {path: _line_count(path) for path in _python_files("src")}
    over = [f"{_where(path)}: {n} lines" for path, n in counts.items() if n > MAX_MODULE_LINES]
    assert over == [], f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(over)


def _function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, first line, lines) of every function and method in ``path``, nested ones
    too; the length runs from the ``def`` (or its first decorator) to the last line of the body."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = f"{prefix}{getattr(child, 'name', '')}"
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                found.append((name, first, child.end_lineno - first + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def test_function_lengths_are_measured_from_decorator_to_last_line(tmp_path):
    # a hand-counted case: the check itself must be able to fail
    source = tmp_path / "example.py"
    source.write_text(
        "class A:\n"  # 1
        "    @staticmethod\n"  # 2
        "    def f():\n"  # 3
        "        def g():\n"  # 4
        "            return 1\n"  # 5
        "\n"  # 6
        "        return g\n"  # 7
        "async def h(): pass\n"  # 8
    )
    assert _function_lengths(source) == [("A.f", 2, 6), ("A.f.g", 4, 2), ("h", 8, 1)]


def test_no_function_is_over_the_line_limit():
    over = [
        f"{_where(path, first)}: {name} is {lines} lines"
        for path in _python_files("src")
        for name, first, lines in _function_lengths(path)
        if lines > MAX_FUNCTION_LINES
    ]
    assert over == [], f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(over)


# --- formatter escapes ------------------------------------------------------------------------


def _unexplained_skips(source: str) -> list[int]:
    """Lines whose ``# fmt: skip`` has no reason after it. The reason must be a comment of its
    own (``# fmt: skip  # aligned by hand``): ruff ignores a ``# fmt: skip`` with other text in
    the same comment."""
    lines = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT or "fmt: skip" not in token.string:
            continue
        parts = [part.strip() for part in token.string.split("#")]
        index = next(i for i, part in enumerate(parts) if part.startswith("fmt: skip"))
        reason = " ".join(parts[index + 1 :])
        if not any(character.isalpha() for character in reason):
            lines.append(token.start[0])
    return lines


@pytest.mark.parametrize(
    "line, explained",
    [
        ("x = [1,  2]  # fmt: skip\n", False),
        ("x = [1,  2]  # fmt: skip  #\n", False),
        ("x = [1,  2]  # noqa: E501  # fmt: skip\n", False),
        ("x = [1,  2]  # fmt: skip  # columns aligned by hand\n", True),
        ('x = "# fmt: skip"\n', True),  # in a string, not a comment
        ("x = [1,  2]\n", True),
    ],
)
def test_a_fmt_skip_needs_a_reason_after_it(line, explained):
    assert (_unexplained_skips(line) == []) == explained


def test_every_fmt_skip_says_why():
    unexplained = [
        _where(path, line)
        for path in _python_files(*FORMATTED)
        for line in _unexplained_skips(path.read_text(encoding="utf-8"))
    ]
    assert unexplained == [], "`# fmt: skip` without a reason (write `# fmt: skip  # why`):\n" + "\n".join(unexplained)
