"""Tempest's image API tests (`tempest.api.image.v2`, 102 tests) against `picocloud up`,
through `tools/tempest.sh`, exactly as an operator runs them: two stores, web-download from
loopback allowed, image locations on (so the location tests run), compute on (so the tests
that snapshot a server run)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import Picocloud, PicocloudFactory, run_tempest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def glance_cloud(picocloud_factory: PicocloudFactory) -> Iterator[Picocloud]:
    pc = picocloud_factory("glance", env={
        "PICOCLOUD_IMAGE_STORES": "local:images,second:images2",
        "PICOCLOUD_IMAGE_IMPORT_ALLOWED_HOSTS": "public,127.0.0.1",
        "PICOCLOUD_IMAGE_LOCATIONS": "true",
    })
    pc.start()
    yield pc
    pc.stop()


def test_tempest_image_passes(glance_cloud: Picocloud) -> None:
    counts, failures = run_tempest("image", glance_cloud.data_dir, services="nova glance")
    assert counts["passed"] >= 80, failures  # the target (85 pass when written)
