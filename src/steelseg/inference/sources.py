"""What ``predict``, ``tune`` and the service accept as a model, resolved into networks.

A model source is one of:

- a run directory (it has ``config.yaml``): one network;
- a folder of runs, as ``train --fold all`` (``fold-<k>/``) or ``--per-class``
  (``class-<id>-<name>/``) write them: each run is a network, and they share the folder's
  weight (a CV folder of 5 folds counts as much as one run beside it);
- an ensemble file (YAML, ``EnsembleFile``): members, each a run or a folder of runs, with
  weight, TTA and temperature, and the post-processing to use; a folder holding an
  ``ensemble.yaml`` (``steelseg fit``'s output) stands for its file;
- an exported model file (``steelseg export``, ``.onnx``): one network on onnxruntime, whose
  config and post-processing are in the file (a deployment needs nothing else, and no torch).

Post-processing comes from, first to last: ``--postprocess FILE``; the first source's own
when it is an exported model file; the ensemble file's
``postprocess`` (by default ``postprocess.json`` beside it); the first folder of runs' own
``postprocess.json`` (``steelseg tune`` writes it), given directly or as an ensemble file's
first member; the first run's ``postprocess.json`` when
that run predicts every class (not in an untuned per-class folder); else the config's defaults.
A file lacking the gate keys (a run's, written by training) gates nothing.

Paths in an ensemble file (``members[].run``, ``postprocess``) are relative to the file's
folder. Two policies:

- by default the file is the user's own, and may point anywhere: ``../models/run`` beside
  it, or an absolute path (``steelseg tune`` writes absolute paths, so its output works from
  any folder);
- confined (``resolve(..., confine=True)``, or the environment variable
  ``STEELSEG_CONFINE_PATHS=1`` for any command, e.g. a service that loads ensemble files
  others can write): every path must lead, after ``..`` and symlinks are followed, to a place
  inside the file's folder, and so must the files of each run it names (config.yaml, weights,
  post-processing, ...): an absolute path, a ``..`` that climbs out, or a symlink that leads
  out is refused in one line naming the file, the entry and where it leads.

The paths inside a run's own config.yaml (data.root, model.init_from, ...) are never read
here: prediction builds the network with the run's own weights (``inference.backends.torch_backend.load_net``).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from steelseg.config import Config, yaml_problem
from steelseg.core.postprocess import PostProcess
from steelseg.files import rundir
from steelseg.inference.backends.onnx_backend import is_model_file, read_model_file
from steelseg.inference.ensemble import EnsembleError, tta_views

ENSEMBLE_SUFFIXES = (".yaml", ".yml")
CONFINE_ENV = "STEELSEG_CONFINE_PATHS"
# The files of a run that prediction may read: each must stay inside a confined ensemble's folder.
_RUN_FILES = (
    rundir.CONFIG,
    rundir.WEIGHTS,
    rundir.WEIGHTS_SHA256,
    rundir.POSTPROCESS,
    rundir.GATE,
    rundir.ONNX,
    rundir.SUMMARY,
    rundir.OOF,
    rundir.STAGES_DIR,
)


class MemberSpec(BaseModel):
    """One entry of an ensemble file."""

    model_config = ConfigDict(extra="forbid")

    run: str  # a run directory or a folder of runs, relative to the ensemble file
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)
    tta: str | list[str] = "none"  # none, hflip, vflip, both (none+hflip+vflip), or a list of views
    temperature: float = Field(1.0, gt=0, allow_inf_nan=False)  # member probabilities become sigmoid(logit / T)
    backend: str | None = None  # None: the command's --backend

    @field_validator("tta")
    @classmethod
    def _views(cls, tta):
        tta_views(tta)  # raises with the choices
        return tta


class ClusterSpec(BaseModel):
    """Near-duplicate clusters (5th place): images whose encoder features are within
    ``distance`` (cosine) share their class scores before the gates."""

    model_config = ConfigDict(extra="forbid")

    distance: float = Field(0.05, gt=0, lt=2)
    share: str = Field("mean", pattern="^(mean|max)$")


class EnsembleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    members: list[MemberSpec] = Field(min_length=1)
    postprocess: str | None = None  # JSON file, relative to the ensemble file; None: postprocess.json beside it
    clusters: ClusterSpec | None = None


class Network:
    """A run to load: its folder, its files (``rundir.Run``, read once; None for an exported
    model file, whose ``config`` is given), and how the ensemble uses it."""

    def __init__(
        self, run_dir: Path, spec: MemberSpec, share: int, member: int, source: Path, config: Config | None = None
    ):
        self.run_dir = run_dir  # or an exported model file
        self.member = member  # which source entry it came from (runs of one folder share it)
        self.source = source
        self.run = rundir.load_run(run_dir) if config is None else None
        self.config = config if config is not None else self.run.config
        self.spec = spec
        self.weight = spec.weight / share


class Resolved:
    """Sources resolved: the networks in order, the post-processing file to use (or None: the
    configs' defaults), and the cluster setting."""

    def __init__(
        self,
        networks: list[Network],
        postprocess: Path | None,
        clusters: ClusterSpec | None,
        folder: Path | None,
        embedded: str | None = None,
    ):
        self.networks = networks
        self.postprocess = postprocess
        self.clusters = clusters
        self.folder = folder  # where a tuned post-processing of this ensemble belongs
        self.embedded = embedded  # post-processing JSON of a first source that is an exported model

    def read_postprocess(self, config: Config, num_classes: int, path: Path | None = None) -> PostProcess:
        """``path`` (``--postprocess``) if given, else the sources' post-processing."""
        if path is None and self.embedded is not None:
            try:
                return PostProcess.from_json(self.embedded, num_classes, defaults=rundir.postprocess_defaults(config))
            except ValueError as err:
                raise EnsembleError(f"{self.networks[0].run_dir}: its post-processing metadata: {err}") from None
        path = path or self.postprocess
        first = self.networks[0].run
        own = first is not None and path == first.path / rundir.POSTPROCESS
        if own and first.postprocess.num_classes == num_classes:
            return first.postprocess  # read already, with the run
        return rundir.read_postprocess(path, config, num_classes)


def confined() -> bool:
    """Whether ``STEELSEG_CONFINE_PATHS`` asks for confined ensemble files (module docstring)."""
    return os.environ.get(CONFINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def resolve(sources: list[str | os.PathLike], tta: str | None = None, confine: bool | None = None) -> Resolved:
    """Resolve model sources (see the module docstring). ``tta`` overrides every member's;
    ``confine``: keep the paths of ensemble files inside their folders (None: ``confined()``)."""
    if not sources:
        raise EnsembleError("no model given")
    confine = confined() if confine is None else confine
    networks, postprocess, clusters, folder, embedded = [], None, None, None, None
    for i, source in enumerate(sources):
        path = system_file(Path(source))
        if is_model_file(path):
            config, post_json = read_model_file(path)
            spec = MemberSpec(run=str(path), tta=tta or "none", backend="onnx")
            networks.append(Network(path, spec, 1, _next(networks), path, config))
            if i == 0:
                embedded, folder = post_json, path.parent
        elif path.suffix in ENSEMBLE_SUFFIXES and path.is_file():
            specs, file_post, file_clusters = read_ensemble_file(path, confine)
            clusters = clusters or file_clusters
            for k, spec in enumerate(specs):
                member_path = _beside(path, spec.run, f"members.{k}.run", confine)
                try:
                    found = _networks(member_path, spec, tta, _next(networks))
                except EnsembleError as err:  # name the file and the entry, not just the folder
                    raise EnsembleError(f"{path}: members.{k}.run: {err}") from None
                if confine:
                    for network in found:
                        _check_run_inside(path, f"members.{k}.run", network.run_dir)
                networks += found
            if i == 0:
                postprocess, folder = file_post, path.parent
        else:
            networks += _networks(path, MemberSpec(run=str(path)), tta, _next(networks))
            if i == 0:
                folder = path
                own = path / rundir.POSTPROCESS
                postprocess = own if own.is_file() else None
    if embedded is not None:
        return Resolved(networks, None, clusters, folder, embedded)
    if postprocess is None and networks[0].source != networks[0].run_dir:
        # The first member is a folder of runs (of an ensemble file): its own tuned file.
        own = networks[0].source / rundir.POSTPROCESS
        postprocess = own if own.is_file() else None
    if postprocess is None:
        # The first run's file fits only when that run predicts every class of the ensemble
        # (not the first run of a per-class folder): else the configs' defaults.
        first = networks[0].run_dir / rundir.POSTPROCESS
        covered = set().union(*(channels(n.config) for n in networks))
        postprocess = first if first.is_file() and covered <= set(channels(networks[0].config)) else None
    return Resolved(networks, postprocess, clusters, folder)


def system_file(path: Path) -> Path:
    """A folder that holds an ``ensemble.yaml`` and is not itself a run (``steelseg fit``'s output,
    or ``tune``'s of several models) stands for that file."""
    if path.is_dir() and (path / rundir.ENSEMBLE).is_file() and not (path / rundir.CONFIG).is_file():
        return path / rundir.ENSEMBLE
    return path


def read_ensemble_file(path: Path, confine: bool = False) -> tuple[list[MemberSpec], Path | None, ClusterSpec | None]:
    try:
        data = yaml.safe_load(path.read_text())
        ensemble = EnsembleFile.model_validate(data)
    except OSError as err:
        raise EnsembleError(f"{path}: cannot read ({err})") from None
    except yaml.YAMLError as err:
        raise EnsembleError(f"{path}: {yaml_problem(err)}") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise EnsembleError(f"{path}: {where}: {first['msg']}") from None
    if ensemble.postprocess is not None:
        post = _beside(path, ensemble.postprocess, "postprocess", confine)
        if not post.is_file():
            raise EnsembleError(f"{path}: postprocess file {post} not found")
    else:
        post = path.parent / rundir.POSTPROCESS
        post = post if post.is_file() else None
        if post is not None and confine:
            _beside(path, rundir.POSTPROCESS, "postprocess", confine)  # a symlink beside it may lead out
    return ensemble.members, post, ensemble.clusters


def _beside(file: Path, entry: str, where: str, confine: bool) -> Path:
    """``entry`` of the ensemble ``file``, relative to its folder; when ``confine``, refused
    unless it leads (``..`` and symlinks followed) inside that folder."""
    target = file.parent / entry  # an absolute entry stays absolute
    if confine:
        folder = file.parent.resolve()
        leads = target.resolve()
        if Path(entry).is_absolute() or not leads.is_relative_to(folder):
            raise EnsembleError(
                f"{file}: {where}: {entry!r} leads outside the file's folder (to {leads}); with {CONFINE_ENV} set, "
                "an ensemble file may name only runs and files inside its own folder"
            )
    return target


def _check_run_inside(file: Path, where: str, run_dir: Path) -> None:
    """A run inside a confined ensemble's folder whose files (symlinks) lead out is refused too."""
    for name in _RUN_FILES:
        if (run_dir / name).exists() or (run_dir / name).is_symlink():
            relative = os.path.relpath(run_dir / name, file.parent)
            _beside(file, relative, f"{where}: {run_dir / name}", True)


def runs_in(path: Path) -> list[Path]:
    """The run directories a source names: itself, or the runs of a folder of runs."""
    if (path / rundir.CONFIG).is_file():
        return [path]
    if not path.is_dir():
        raise EnsembleError(f"{path}: not found (expected a run directory, a folder of runs or an ensemble .yaml)")
    runs = sorted(p for p in path.iterdir() if (p / rundir.CONFIG).is_file())
    if not runs:
        raise EnsembleError(
            f"{path}: {rundir.CONFIG} not found: not a run directory, a folder of runs or an ensemble .yaml"
        )
    return runs


def _networks(path: Path, spec: MemberSpec, tta: str | None, member: int) -> list[Network]:
    if tta is not None:
        spec = spec.model_copy(update={"tta": tta})
    runs = runs_in(path)
    return [Network(run, spec, len(runs), member, path) for run in runs]


def _next(networks: list[Network]) -> int:
    return networks[-1].member + 1 if networks else 0


def ensemble_classes(networks: list[Network]) -> tuple[list[str], dict[int, int]]:
    """The ensemble's classes, those some network predicts (a lone binary run: its one class),
    as (names, {class index in the full list: position in the ensemble's})."""
    all_names = _all_names(networks[0].config)
    predicted = sorted(set().union(*(channels(n.config) for n in networks)))
    return [all_names[c] for c in predicted], {c: i for i, c in enumerate(predicted)}


def check_compatible(networks: list[Network]) -> list[str]:
    """The class names every network is a part of (a per-class run: one of them), or an error
    naming the first run whose classes differ."""
    first = networks[0]
    names = _all_names(first.config)
    for network in networks[1:]:
        if _all_names(network.config) != names:
            raise EnsembleError(
                f"{network.run_dir} has classes {_all_names(network.config)}, but {first.run_dir} has {names}: "
                "an ensemble's members must share one class list"
            )
    return names


def channels(config: Config) -> list[int]:
    """The ensemble classes (0-based) of a run's output channels."""
    classes = config.data.classes
    return [c - 1 for c in classes] if classes else list(range(len(config.data.class_names)))


def _all_names(config: Config) -> list[str]:
    return list(config.data.class_names or [])
