"""Every bundled recipe loads and trains one tiny step, stages included, on tiny strips."""

import pytest
import yaml

from steelseg.config import BUNDLED_DIR, Config
from steelseg.files import synth
from steelseg.files.rundir import load_run_config
from steelseg.training.fit import train

RECIPES = sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


@pytest.fixture(scope="module")
def strips(tmp_path_factory):
    root = tmp_path_factory.mktemp("strips")
    synth.write_dataset(root, 4, seed=6, height=64, width=256, progress=False)
    return root


def _tiny(recipe: dict, root) -> dict:
    data = recipe.setdefault("data", {})
    data.update(root=str(root), batch_size=2, val_fraction=0.25)
    if data.get("crop_height", 256):  # cropping recipes: a small crop; full-image ones keep 64x256
        data.update(crop_height=32, crop_width=64)
    recipe.setdefault("train", {}).update(
        epochs=1, batches_per_epoch=1, val_batches=1, accelerator="cpu", oof_scale=None
    )
    for stage in recipe.get("stages", []):
        stage.setdefault("train", {})["epochs"] = 1
        stage.get("data", {}).pop("batch_size", None)
    return recipe


@pytest.mark.slow
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_a_step(name, strips, tmp_path):
    recipe = yaml.safe_load((BUNDLED_DIR / f"{name}.yaml").read_text())
    config = Config.model_validate(_tiny(recipe, strips))
    summary = train(config, tmp_path / "run", progress=False)
    assert summary.global_step >= 1
    final = load_run_config(tmp_path / "run")
    assert final.model.arch == recipe["model"].get("arch", "unet")
    assert final.model.encoder_name == recipe["model"].get("encoder_name", "resnet18")
    assert len(summary.stages or {"1": None}) == 1 + len(recipe.get("stages", []))
