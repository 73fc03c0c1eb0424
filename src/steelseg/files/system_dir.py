"""A system folder (``steelseg fit``'s output, or ``tune``'s of several models): an
``ensemble.yaml`` naming its members, beside the post-processing tuned for them. Commands that
need one run's config to name the classes (``score --run``) read its first member's."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from steelseg.errors import SteelsegError

ENSEMBLE = "ensemble.yaml"
CONFIG = "config.yaml"


def first_member_run(folder: str | os.PathLike) -> Path:
    """The first run of the first member of ``folder/ensemble.yaml`` (a run, or the first run
    of a folder of runs); paths are relative to the folder."""
    path = Path(folder) / ENSEMBLE
    try:
        members = (yaml.safe_load(path.read_text()) or {}).get("members") or []
        member = Path(folder) / str(members[0]["run"])
    except (OSError, yaml.YAMLError, AttributeError, KeyError, IndexError, TypeError) as err:
        raise SteelsegError(f"{path}: cannot read its first member ({type(err).__name__})") from None
    if (member / CONFIG).is_file():
        return member
    runs = sorted(p for p in member.iterdir() if (p / CONFIG).is_file()) if member.is_dir() else []
    if not runs:
        raise SteelsegError(f"{path}: members.0.run: {member} holds no run ({CONFIG} not found)")
    return runs[0]
