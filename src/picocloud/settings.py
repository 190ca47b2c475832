"""Settings: one typed object fed by defaults, a TOML file, PICOCLOUD_* variables and flags."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "picocloud"


@dataclass(frozen=True)
class Settings:
    """Everything picocloud reads at start; later layers override earlier ones."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8780
    db: str = ""  # SQLAlchemy/libpq URL; empty means SQLite in data_dir
    public_url: str = ""  # base URL advertised in the catalog; empty means http://host:port
    region: str = "RegionOne"
    token_expiration: int = 3600  # seconds
    password_hash_rounds: int = 12  # bcrypt cost, as Keystone's default
    token_cache_seconds: float = 5.0  # how long another controller's writes may go unseen
    policy_file: str = ""  # JSON or YAML overrides of the default policy rules
    log_level: str = "info"
    write_user_clouds_yaml: bool = True  # merge the entry into ~/.config/openstack/clouds.yaml
    image_size_cap: int = 1 << 40  # largest image upload in bytes (Glance's default, 1 TiB)
    image_max_virtual_size: int = 1 << 40  # largest disk an uploaded image may describe
    image_quota_bytes: int = 0  # image bytes per project; 0 means unlimited
    image_builtin_tiny: bool = True  # build and register the `tiny` guest image at first start
    compute_driver: str = "qemu"  # hypervisor driver of this host's agent ("fake": tests only)
    compute_host: str = ""  # this host's name; empty means the machine's hostname
    cpu_allocation_ratio: float = 16.0  # vCPUs per host CPU (Nova's classic default: idle
    # lab guests use little CPU; lower it for busy business VMs)
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mb: int = 512
    scheduler_weigher: str = "spread"  # "spread" (most free RAM first) or "fill" (stack)
    graceful_shutdown_timeout: float = 30.0  # seconds an ACPI power-off may take
    # Image stores as "id:path,id:path" (relative paths are under data_dir; the first is the
    # default); empty means one store `local` at data_dir/images.
    image_stores: str = ""
    # Hosts web-download may fetch from: `public` (globally routable addresses), host names,
    # `.domain` suffixes, IP addresses, CIDR networks; empty turns web-download off.
    image_import_allowed_hosts: str = "public"
    # Glance's show_multiple_locations: image locations are shown to their owners, who may
    # also register http(s) URLs (on hosts image_import_allowed_hosts allows) as an image's
    # data instead of uploading it. Off by default, as in Glance (OSSN-0065).
    image_locations: bool = False

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'picocloud.db'}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_BOOL_TRUE = {"1", "true", "yes", "on"}


def _coerce(name: str, raw: Any) -> Any:
    kinds = {f.name: f.type for f in fields(Settings)}
    kind = kinds[name]
    if kind in ("int",):
        return int(raw)
    if kind in ("float",):
        return float(raw)
    if kind in ("bool",):
        return raw if isinstance(raw, bool) else str(raw).lower() in _BOOL_TRUE
    if kind in ("Path",):
        return Path(raw).expanduser()
    if isinstance(raw, list):  # a TOML list for a comma-separated setting
        return ",".join(str(item) for item in raw)
    return str(raw)


def load_settings(
    overrides: dict[str, Any] | None = None,
    config_file: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build Settings: defaults < TOML file < PICOCLOUD_* environment < explicit overrides."""
    env = os.environ if environ is None else environ
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    path = config_file or env.get("PICOCLOUD_CONFIG")
    if path:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
        section = doc.get("picocloud", doc)
        for key, raw in section.items():
            key = key.replace("-", "_")
            if key not in names:
                raise ValueError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(key, raw)
    for name in names:
        raw = env.get(f"PICOCLOUD_{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, raw)
    for key, raw in (overrides or {}).items():
        if raw is not None:
            values[key] = _coerce(key, raw)
    return Settings(**values)
