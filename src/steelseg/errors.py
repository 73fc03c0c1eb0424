"""The errors that mean "your input is wrong" (shown as one line) rather than "a bug" (traceback)."""

from steelseg.annotations import AnnotationError
from steelseg.config import ConfigError
from steelseg.datasets import DatasetError
from steelseg.folds import FoldError
from steelseg.images import ImageError
from steelseg.model import WeightsError
from steelseg.rle import RLEError
from steelseg.rundir import RunDirError

USER_ERRORS = (AnnotationError, ConfigError, DatasetError, FoldError, ImageError, RLEError, RunDirError, WeightsError, FileExistsError)
