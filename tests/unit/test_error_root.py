"""One error root: every exception class of the package (the emulator aside) is a TryonError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import requests

import kolors_tryon
from kolors_tryon.config.http_deadline import DeadlineExceeded
from kolors_tryon.config.settings import SettingsError
from kolors_tryon.errors import JobNotFound, TryonError
from kolors_tryon.jobs.batch import ImageSourceError
from kolors_tryon.kling import KlingError
from kolors_tryon.worker.delivery_lane import NotADelivery

# The emulator imports nothing of the service (it stands for Kling), so it has no root here.
STANDALONE = "kolors_tryon.emulator"


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of the package, by its dotted name."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(kolors_tryon.__path__, "kolors_tryon."):
        if module_info.name == STANDALONE or module_info.name.startswith(STANDALONE + "."):
            continue
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_exception_class_of_the_package_is_a_tryon_error() -> None:
    """Walking every module outside emulator/, each exception class derives from TryonError."""
    classes = _exception_classes()
    assert len(classes) > 20  # the walk found the package (the Kling tree alone has 18)
    strays = sorted(name for name, cls in classes.items() if not issubclass(cls, TryonError))
    assert strays == []


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (JobNotFound, LookupError),
        (SettingsError, ValueError),
        (ImageSourceError, ValueError),
        (NotADelivery, ValueError),
        (DeadlineExceeded, requests.Timeout),
    ],
)
def test_built_in_bases_stay_beside_the_root(
    error: type[BaseException], builtin: type[BaseException]
) -> None:
    """Callers that catch the built-in base still catch the re-rooted class."""
    assert issubclass(error, TryonError)
    assert issubclass(error, builtin)


def test_the_kling_tree_hangs_under_the_root() -> None:
    """KlingError, the base of the client's tree, is a TryonError; the tree is unchanged."""
    assert KlingError.__bases__ == (TryonError,)
