"""The flavors a new cloud starts with: Nova's classic m1.* set and two small ones that fit the
built-in tiny image (m1.nano is left to the user: the README's tour creates it)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from picocloud.compute.flavors import utcnow
from picocloud.compute.models import Flavor

# (id, name, vcpus, ram MiB, disk GiB)
DEFAULT_FLAVORS: tuple[tuple[str, str, int, int, int], ...] = (
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
    ("42", "p1.tiny", 1, 128, 1),
    ("84", "p1.small", 1, 256, 1),
)


def seed_flavors(db: Session) -> list[Flavor]:
    """Create the default flavors in a cloud that has no flavor at all, and return them.

    Run at every start: once any flavor exists this does nothing, so flavors an operator
    deleted or changed stay as the operator left them. The caller commits.
    """
    if db.scalar(select(func.count()).select_from(Flavor)):
        return []
    now = utcnow()
    created = [
        Flavor(id=fid, name=name, vcpus=vcpus, ram=ram, disk=disk, ephemeral=0, swap=0,
               rxtx_factor=1.0, is_public=True, disabled=False, description=None,
               extra_specs={}, created_at=now)
        for fid, name, vcpus, ram, disk in DEFAULT_FLAVORS
    ]
    try:
        with db.begin_nested():
            db.add_all(created)
    except IntegrityError:  # another controller seeded them at the same moment
        return []
    return created
