"""The real-data fixtures of tests/conftest.py: where their folder is missing they skip, or,
under STEELSEG_REQUIRE_SHARED (CI), fail with one line naming the folder."""

import pytest

# (fixture, the environment variable that moves its folder, the file or folder it must hold)
FIXTURES = [("severstal_mini", "STEELSEG_SEVERSTAL_MINI", "train.csv"), ("neu_seg", "STEELSEG_NEU_SEG", "masks")]


@pytest.mark.parametrize("fixture, variable, marker", FIXTURES)
def test_a_missing_folder_fails_under_require_shared(request, monkeypatch, tmp_path, fixture, variable, marker):
    missing = tmp_path / "not-there"
    monkeypatch.setenv(variable, str(missing))
    monkeypatch.setenv("STEELSEG_REQUIRE_SHARED", "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        request.getfixturevalue(fixture)
    message = str(failed.value)
    assert f"not found at {missing} (no {marker}) although STEELSEG_REQUIRE_SHARED is set" in message
    assert "\n" not in message


@pytest.mark.parametrize("require", [None, "0"])
@pytest.mark.parametrize("fixture, variable, marker", FIXTURES)
def test_a_missing_folder_skips_otherwise(request, monkeypatch, tmp_path, fixture, variable, marker, require):
    monkeypatch.setenv(variable, str(tmp_path / "not-there"))
    if require is None:
        monkeypatch.delenv("STEELSEG_REQUIRE_SHARED", raising=False)
    else:
        monkeypatch.setenv("STEELSEG_REQUIRE_SHARED", require)
    with pytest.raises(pytest.skip.Exception, match="not found at"):
        request.getfixturevalue(fixture)


@pytest.mark.parametrize("fixture, variable, marker", FIXTURES)
def test_a_folder_with_its_marker_is_given_to_the_test(request, monkeypatch, tmp_path, fixture, variable, marker):
    (tmp_path / marker).touch()
    monkeypatch.setenv(variable, str(tmp_path))
    monkeypatch.setenv("STEELSEG_REQUIRE_SHARED", "1")
    assert request.getfixturevalue(fixture) == tmp_path
