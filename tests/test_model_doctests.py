"""The examples in model.py's docstrings run (gs1_key)."""

from __future__ import annotations

import doctest

import scanstation.model


def test_model_doctests_pass() -> None:
    result = doctest.testmod(scanstation.model)
    assert result.attempted >= 2
    assert result.failed == 0
