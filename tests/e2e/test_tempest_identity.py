"""Tempest's identity API tests (`tempest.api.identity`, 138 tests) against `picocloud up`,
through `tools/tempest.sh`, exactly as an operator runs them."""

from __future__ import annotations

import pytest

from .conftest import Picocloud, run_tempest

pytestmark = pytest.mark.e2e


def test_tempest_identity_passes(cloud: Picocloud) -> None:
    counts, failures = run_tempest("identity", cloud.data_dir)
    assert counts["passed"] >= 120, failures  # the target (134 pass when written)
