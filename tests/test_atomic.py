import pytest

from steelseg.atomic import atomic_open, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.csv"
    write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write("half a new fi")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_write_creates_parent_folders(tmp_path):
    write_text(tmp_path / "a" / "b" / "c.txt", "x")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "x"
