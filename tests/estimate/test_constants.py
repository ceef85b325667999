"""The estimator's data tables load typed (planner/estimate/constants.py): every backend a profile may
name has its own constants, and a misspelt key fails at load with its name."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from planner.errors import InvalidOptionError
from planner.estimate.constants import BACKENDS, Backends, backend, backends
from planner.profile.hardware import GPU


def test_every_backend_a_gpu_may_name_has_its_own_constants():
    named = typing.get_args(GPU.model_fields["backend"].annotation)
    assert set(named) | {"cpu"} == set(BACKENDS)
    for name in BACKENDS:
        assert backend(name).overhead_mib > 0 and backend(name).overhead_source


def test_an_unknown_backend_is_an_error_not_another_backends_figures():
    with pytest.raises(InvalidOptionError, match="no constants for the backend 'opencl'"):
        backend("opencl")


def test_a_misspelt_key_fails_at_load_with_its_name():
    data = backends().model_dump()
    data["cuda"]["overhead_mb"] = data["cuda"].pop("overhead_mib")
    with pytest.raises(ValidationError, match="overhead_mb"):
        Backends(**data)
