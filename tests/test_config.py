import pytest
import yaml

from steelseg.config import BUNDLED_DIR, ConfigError, load_config


def test_defaults_and_overrides():
    config = load_config(None, ["data.batch_size=3", "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}"])
    assert config.data.batch_size == 3
    assert config.model.arch_params == {"decoder_channels": [8, 8, 8, 8, 8]}
    assert config.model.encoder_weights is None  # offline by default


def test_unknown_keys_are_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c.yaml: invalid configuration:\n  train.learning_rate: Extra inputs"):
        load_config(path)
    with pytest.raises(ConfigError, match="nonsense"):
        load_config(None, ["nonsense.key=1"])


def test_bad_values_and_files(tmp_path):
    with pytest.raises(ConfigError, match="data.val_fraction"):
        load_config(None, ["data.val_fraction=1.5"])
    with pytest.raises(ConfigError, match="no such config file or bundled recipe"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["epochs"])


@pytest.mark.parametrize("recipe", sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml")))
def test_bundled_recipes_load_with_every_value_they_set(recipe):
    config = load_config(recipe).model_dump()
    written = yaml.safe_load((BUNDLED_DIR / f"{recipe}.yaml").read_text())
    assert _contains(config, written), recipe


def _contains(actual, written) -> bool:
    """Every value the file writes is in the loaded config (which adds defaults around them)."""
    if isinstance(written, dict):
        return isinstance(actual, dict) and all(k in actual and _contains(actual[k], v) for k, v in written.items())
    if isinstance(written, list):
        return isinstance(actual, list) and len(actual) == len(written) and all(map(_contains, actual, written))
    return actual == written


def test_a_bare_loss_name_is_one_term():
    config = load_config(None, ["train.loss=focal"])
    assert [(t.name, t.weight) for t in config.train.loss] == [("focal", 1.0)]


def test_yaml_round_trip(tmp_path):
    config = load_config("demo")
    path = tmp_path / "resolved.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config


def test_per_class_post_processing_lists_must_match_the_classes():
    with pytest.raises(ConfigError, match="postprocess.min_area lists 2 values; the model has 4 classes"):
        load_config(None, ["data.class_names=[a, b, c, d]", "postprocess.min_area=[1, 2]"])
    with pytest.raises(ConfigError, match="postprocess.pixel_threshold lists 4 values; the model has 1 classes"):
        load_config(
            None,
            ["data.class_names=[a, b, c, d]", "data.classes=[2]", "postprocess.pixel_threshold=[0.5, 0.5, 0.5, 0.5]"],
        )
    load_config(None, ["postprocess.label_threshold=[0.5]"])  # names not known yet: checked when training resolves them


def test_training_refuses_per_class_lists_of_another_length_in_one_line(tmp_path, capsys):
    from steelseg.commands.cli import main
    from steelseg.files import synth

    synth.write_dataset(tmp_path / "data", 2, seed=1, height=32, width=64, progress=False)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(tmp_path / "data"),
                "--out",
                str(run),
                "--set",
                "postprocess.pixel_threshold=[0.5]",
                "--quiet",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "postprocess.pixel_threshold lists 1 values; the model has 4 classes" in err and "Traceback" not in err
    assert not run.exists()  # refused before anything was written
