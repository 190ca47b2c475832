"""Image locations: the places an image's bytes can be read from (Glance's `locations`).

Two kinds, shown as one ordered list of `{"url", "metadata"}`:
- the copies in picocloud's own stores, found by looking (`file://` URLs whose metadata names
  the store); they come and go with uploads, imports and `DELETE /v2/stores/...`;
- http(s) URLs an image owner registered (Glance's http store), kept as rows in order. They
  are checked with the same host policy as web-download (`image_import_allowed_hosts`), and
  are read from that URL whenever the data is wanted: a download streams it, the compute
  agent fetches, verifies the checksum and inspects it before a guest uses it.

Registering URLs and showing locations is the operator's choice (`image_locations`, Glance's
show_multiple_locations), off by default: a URL is a promise about bytes picocloud does not
hold. With it on, the JSON patch paths `/locations`, `/locations/-` and `/locations/N` work
as in Glance, and `POST /v2/images/{id}/locations` (API 2.17, in `location_import`) adds a
URL whose bytes are fetched and hashed before the image becomes active.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from picocloud.errors import BadRequest, Conflict, Forbidden
from picocloud.image.models import Image, ImageLocation
from picocloud.image.service import utcnow
from picocloud.image.webfetch import FetchFailed, HostPolicy, RefusedURI, content_length, stream

if TYPE_CHECKING:
    from picocloud.cloud import Cloud

HASH_ALGO = "sha512"  # what picocloud hashes image data with (os_hash_algo)
WEB_STORE = "web"  # the name Glance gives the http store, shown in an image's `stores`
LOCATION_KEYS = {"url", "metadata", "validation_data"}
VALIDATION_KEYS = ("checksum", "os_hash_algo", "os_hash_value")
HASH_ALGOS = ("sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b")
_HEX = re.compile(r"^[0-9a-f]+$")
LOCATION_STATUSES = ("queued", "active")  # where the location list may change


def enabled(cloud: Cloud) -> bool:
    return bool(cloud.settings.image_locations)


def external(db: Session, image_id: str) -> Sequence[ImageLocation]:
    stmt = select(ImageLocation).where(ImageLocation.image_id == image_id)
    return db.scalars(stmt.order_by(ImageLocation.position)).all()


def urls(db: Session, image_id: str) -> list[str]:
    return [row.url for row in external(db, image_id)]


def external_of(db: Session, image_ids: Sequence[str]) -> dict[str, list[ImageLocation]]:
    """The registered URLs of several images in one query (for listings), by image id."""
    found: dict[str, list[ImageLocation]] = {i: [] for i in image_ids}
    stmt = select(ImageLocation).where(ImageLocation.image_id.in_(list(image_ids)))
    for row in db.scalars(stmt.order_by(ImageLocation.position)):
        found[row.image_id].append(row)
    return found


def add_location(db: Session, image_id: str, url: str,
                 metadata: dict[str, Any] | None = None) -> None:
    """Append `url` to the image's locations."""
    db.add(ImageLocation(image_id=image_id, url=url, meta=metadata or {},
                         position=len(external(db, image_id)), created_at=utcnow()))
    db.flush()


def store_locations(cloud: Cloud, image_id: str,
                    held: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The copies in picocloud's stores (`held`: the ids of the stores holding the data, when
    the caller already looked)."""
    found = []
    for store_id in cloud.images.holding(image_id) if held is None else held:
        path = cloud.images.path(image_id, store_id)
        if path is not None:
            found.append({"url": path.resolve().as_uri(), "metadata": {"store": store_id}})
    return found


def locations_json(cloud: Cloud, image_id: str, held: Sequence[str] | None,
                   rows: Sequence[ImageLocation]) -> list[dict[str, Any]]:
    """Store copies first, then the registered URLs (`rows`), as Glance shows them."""
    return [*store_locations(cloud, image_id, held),
            *({"url": row.url, "metadata": dict(row.meta)} for row in rows)]


def open_first(cloud: Cloud, candidates: Sequence[str]) -> Iterator[bytes]:
    """The bytes of the first URL that answers, as 1 MiB chunks (the connection is open when
    this returns); FetchFailed naming the last error when none does."""
    policy = HostPolicy(cloud.settings.image_import_allowed_hosts)
    error: Exception | None = None
    for url in candidates:
        chunks = stream(url, policy)
        try:
            first = next(chunks, b"")
        except (FetchFailed, RefusedURI) as exc:
            error = exc
            continue
        return itertools.chain([first], chunks)
    raise FetchFailed(str(error or "the image has no location"))


# -- checking what users send ---------------------------------------------------------------
def check_validation(data: Any, algos: Sequence[str] = HASH_ALGOS) -> dict[str, str]:
    """`validation_data` as Glance reads it: os_hash_algo (one of `algos`) and os_hash_value
    together, hex digests of the right length; 400 otherwise."""
    if not isinstance(data, dict) or set(data) - set(VALIDATION_KEYS):
        raise BadRequest("Invalid validation_data: only checksum, os_hash_algo and "
                         "os_hash_value may be given.")
    if not all(isinstance(v, str) for v in data.values()):
        raise BadRequest("Invalid validation_data: values are strings.")
    if ("os_hash_algo" in data) != ("os_hash_value" in data):
        raise BadRequest("Invalid validation_data: os_hash_algo and os_hash_value go together.")
    checksum = data.get("checksum")
    if checksum is not None and not (len(checksum) == 32 and _HEX.match(checksum)):
        raise BadRequest("Invalid validation_data: checksum is an md5 hex digest.")
    algo = data.get("os_hash_algo")
    if algo is not None:
        if algo not in algos:
            raise BadRequest(f"Invalid validation_data: os_hash_algo {algo!r} is not one of "
                             f"{', '.join(algos)}.")
        value = data["os_hash_value"]
        if len(value) != hashlib.new(algo).digest_size * 2 or not _HEX.match(value):
            raise BadRequest(f"Invalid validation_data: os_hash_value is not a {algo} hex "
                             "digest.")
    return dict(data)


def check_url(cloud: Cloud, url: Any) -> str:
    """A URL picocloud may read image data from: http(s), host allowed; 400 otherwise."""
    if not isinstance(url, str) or not url:
        raise BadRequest("Invalid location: a location needs a 'url'.")
    if url.split(":", 1)[0].lower() not in ("http", "https"):
        raise BadRequest(f"Invalid location {url!r}: only http and https locations can be "
                         "added.")
    if len(url) > 2048:
        raise BadRequest("Invalid location: the URL is longer than 2048 characters.")
    try:
        HostPolicy(cloud.settings.image_import_allowed_hosts).check(url)
    except RefusedURI as exc:
        raise BadRequest(str(exc)) from None
    return url


def apply_validation(image: Image, data: dict[str, str]) -> None:
    """Record validation data on a queued image, or check it against an image that already
    has values: a different value is a 409 and changes nothing."""
    for key in VALIDATION_KEYS:
        wanted = data.get(key)
        if wanted is None:
            continue
        have = getattr(image, key)
        if have is not None and have != wanted:
            raise Conflict(f"The image already has {key} {have}; the location's validation "
                           f"data says {wanted}.")
        if have is None and image.status != "queued":
            raise Conflict(f"The image is {image.status}: validation data can only be set "
                           "while it is queued.")
    for key in VALIDATION_KEYS:
        if data.get(key) is not None:
            setattr(image, key, data[key])


def _parse(cloud: Cloud, value: Any) -> tuple[str, dict[str, Any], dict[str, str] | None]:
    if not isinstance(value, dict) or set(value) - LOCATION_KEYS:
        raise BadRequest("Invalid location: expected an object with url and metadata (and "
                         "optionally validation_data).")
    metadata = value.get("metadata", {})
    if not isinstance(metadata, dict):
        raise BadRequest("Invalid location: metadata is an object.")
    validation = value.get("validation_data")
    if validation is None:
        return check_url(cloud, value.get("url")), metadata, None
    try:  # as Glance: validation data that can't be right conflicts with the image
        checked = check_validation(validation)
    except BadRequest as exc:
        raise Conflict(exc.message) from None
    if checked.get("os_hash_algo", HASH_ALGO) != HASH_ALGO:
        raise Conflict(f"Invalid validation_data: os_hash_algo must be {HASH_ALGO}, the "
                       "algorithm this cloud hashes images with.")
    return check_url(cloud, value.get("url")), metadata, checked


# -- the JSON patch operations --------------------------------------------------------------
class LocationPatch:
    """Applies `/locations` operations of one PATCH to one image, in the request's session."""

    def __init__(self, cloud: Cloud, db: Session, image: Image, may_delete: bool) -> None:
        self.cloud = cloud
        self.db = db
        self.image = image
        self.may_delete = may_delete

    def __call__(self, op: str, index: str | None, value: Any) -> None:
        if not enabled(self.cloud):
            raise Forbidden("It's not allowed to change locations if locations are invisible.")
        if self.image.status not in LOCATION_STATUSES:
            raise Conflict(f"Image {self.image.id} is {self.image.status}: locations can only "
                           "change while it is queued or active.")
        if op == "remove":
            self._remove(index)
        elif op == "add":
            if index is None:
                raise BadRequest("Add a location at /locations/- or /locations/N.")
            self._add(index, value)
        elif index is not None:
            raise BadRequest("Replace the whole list at /locations.")
        else:
            self._replace(value)

    def _rows(self) -> list[ImageLocation]:
        return list(external(self.db, self.image.id))

    def _add(self, index: str, value: Any) -> None:
        url, metadata, validation = _parse(self.cloud, value)
        rows = self._rows()
        stored = store_locations(self.cloud, self.image.id)
        if url in (row.url for row in rows):
            raise BadRequest(f"Duplicate location {url!r}.")
        if index == "-":
            at = len(rows)
        elif index.isdigit() and len(stored) <= int(index) <= len(stored) + len(rows):
            at = int(index) - len(stored)
        else:
            raise BadRequest(f"Invalid location index {index!r}.")
        size = self._size(url)
        if validation:
            apply_validation(self.image, validation)
        if self.image.status == "queued":
            self.image.size = size
            self.image.status = "active"
        rows.insert(at, ImageLocation(image_id=self.image.id, url=url, meta=metadata,
                                      created_at=utcnow()))
        self._save(rows)

    def _size(self, url: str) -> int | None:
        policy = HostPolicy(self.cloud.settings.image_import_allowed_hosts)
        try:
            return content_length(url, policy)
        except (RefusedURI, FetchFailed) as exc:
            raise BadRequest(f"Invalid location {url!r}: {exc}") from None

    def _replace(self, value: Any) -> None:
        if not isinstance(value, list):
            raise BadRequest("Invalid locations: expected a list.")
        stored = store_locations(self.cloud, self.image.id)
        rows = self._rows()
        if not stored and not rows:  # nothing yet: the list is added, in order
            for item in value:
                self._add("-", item)
            return
        new_stored, new_rows = value[:len(stored)], value[len(stored):]
        if new_stored != stored:
            raise BadRequest("The locations of picocloud's stores can't be changed or reordered "
                             "with a patch.")
        parsed = [(item.get("url") if isinstance(item, dict) else None, item)
                  for item in new_rows]
        if [url for url, _ in parsed] != [row.url for row in rows]:
            raise BadRequest("Locations can't be removed, added or replaced by a replace of "
                             "/locations: only their metadata can change.")
        for row, (_url, item) in zip(rows, parsed, strict=True):
            _url, metadata, validation = _parse(self.cloud, item)
            if validation:
                apply_validation(self.image, validation)
            row.meta = metadata

    def _remove(self, index: str | None) -> None:
        if not self.may_delete:
            raise Forbidden("You are not authorized to delete image locations.")
        stored = store_locations(self.cloud, self.image.id)
        rows = self._rows()
        if index is None or not index.isdigit() or int(index) >= len(stored) + len(rows):
            raise BadRequest(f"Invalid location index {index!r}.")
        if len(stored) + len(rows) == 1:
            raise Forbidden("Cannot remove last location in the image.")
        at = int(index)
        if at < len(stored):
            raise Forbidden(f"That is the copy in store {stored[at]['metadata']['store']}: "
                            f"remove it with DELETE /v2/stores/{{store_id}}/{self.image.id}.")
        self.db.delete(rows.pop(at - len(stored)))
        self.db.flush()
        self._save(rows)

    def _save(self, rows: list[ImageLocation]) -> None:
        for position, row in enumerate(rows):
            row.position = position
            if row not in self.db:
                self.db.add(row)
        self.db.flush()
