"""The configured image stores (Glance multi-store) and the staging area of imports.

Which stores hold an image is read from the stores themselves rather than recorded in the
database: data written before multi-store existed is found in the default store `local`, a
copy removed by hand stops being offered, and there is no second truth to drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from picocloud.image.datastore import FilesystemStore, ImageStore, Upload
from picocloud.settings import Settings

DEFAULT_STORE = "local"
STAGING = "staging"
_STORE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class UnknownStore(KeyError):
    """A store id that is not configured; the message names the ones that are."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class StoreInfo:
    id: str
    description: str
    store: ImageStore


def parse_stores(spec: str, data_dir: Path) -> list[tuple[str, Path]]:
    """`id:path,id:path` as (id, absolute path) pairs; relative paths are under `data_dir`."""
    if not spec.strip():
        return [(DEFAULT_STORE, data_dir / "images")]
    pairs: list[tuple[str, Path]] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        store_id, sep, raw = item.partition(":")
        store_id, raw = store_id.strip(), raw.strip()
        if not sep or not raw or not _STORE_ID.match(store_id):
            raise ValueError(f"image_stores: {item!r} is not ID:PATH (an id of letters, digits, "
                             "'-', '_' or '.', then the store's directory)")
        path = Path(raw).expanduser()
        pairs.append((store_id, path if path.is_absolute() else data_dir / path))
    ids = [i for i, _ in pairs]
    roots = [p.resolve() for _, p in pairs]
    if len(set(ids)) != len(ids) or len(set(roots)) != len(roots):
        raise ValueError(f"image_stores: each store needs its own id and directory: {spec!r}")
    staging = (data_dir / "images" / STAGING).resolve()
    if staging in roots:
        raise ValueError(f"image_stores: {staging} is the staging area, not a store")
    if not pairs:
        raise ValueError("image_stores: no store configured")
    return pairs


class ImageStores:
    """Stores by id, the first being the default, and the staging area of imports."""

    def __init__(self, stores: list[StoreInfo], staging: ImageStore) -> None:
        self.infos = stores
        self._by_id = {info.id: info.store for info in stores}
        self.staging = staging

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageStores:
        """Filesystem stores from `image_stores`; staging stays under data_dir/images."""
        infos = []
        for store_id, root in parse_stores(settings.image_stores, settings.data_dir):
            infos.append(StoreInfo(store_id, f"Filesystem store {store_id}",
                                   FilesystemStore(root, reserved=(STAGING,))))
        staging = FilesystemStore(settings.data_dir / "images" / STAGING)
        return cls(infos, staging)

    @property
    def ids(self) -> list[str]:
        return [info.id for info in self.infos]

    @property
    def default(self) -> str:
        return self.infos[0].id

    def get(self, store_id: str) -> ImageStore:
        try:
            return self._by_id[store_id]
        except KeyError:
            raise UnknownStore(f"Store {store_id!r} is not configured; the stores are "
                               f"{', '.join(self.ids)}.") from None

    def holding(self, image_id: str) -> list[str]:
        """Ids of the stores that hold the image's data, sorted (as Glance's `stores`)."""
        return sorted(i for i, store in self._by_id.items() if store.path(image_id) is not None)

    # -- the single-store interface: the default store for writes, any store for reads ----
    def begin(self, image_id: str, store_id: str | None = None) -> Upload:
        return self.get(store_id or self.default).begin(image_id)

    def path(self, image_id: str, store_id: str | None = None) -> Path | None:
        """The image's data in `store_id`, or else in the default store, or else in any."""
        order = [store_id] if store_id else [self.default, *self.ids]
        for sid in order:
            found = self.get(sid).path(image_id)
            if found is not None:
                return found
        return None

    def delete(self, image_id: str, store_id: str | None = None) -> None:
        """Remove the data from `store_id`, or from every store and the staging area."""
        if store_id is not None:
            self.get(store_id).delete(image_id)
            return
        for store in self._by_id.values():
            store.delete(image_id)
        self.staging.delete(image_id)

    def begin_staging(self, image_id: str) -> Upload:
        return self.staging.begin(image_id)

    def staging_path(self, image_id: str) -> Path | None:
        return self.staging.path(image_id)

    def drop_staging(self, image_id: str) -> None:
        self.staging.delete(image_id)
