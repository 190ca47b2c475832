"""The `picocloud` command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from picocloud import __version__
from picocloud.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "data_dir": getattr(args, "data_dir", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "db": getattr(args, "db", None),
    }
    return load_settings(overrides, config_file=getattr(args, "config", None))


def cmd_up(args: argparse.Namespace) -> int:
    import uvicorn

    from picocloud.app import build_app
    from picocloud.cloud import Cloud
    from picocloud.compute.flavors_seed import seed_flavors
    from picocloud.identity.bootstrap import bootstrap, write_client_files

    settings = _settings(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s", stream=sys.stderr)
    cloud = Cloud(settings, migrate="subprocess")
    with cloud.session() as db:
        bootstrap(db, settings)
        seed_flavors(db)
        db.commit()
    clouds = write_client_files(settings)
    app = build_app(cloud)
    cloud.start_agent()
    if settings.image_builtin_tiny:
        from picocloud.image.builtin import ensure_tiny_in_background

        ensure_tiny_in_background(cloud)
    print(f"picocloud {__version__} serving at {settings.base_url}", flush=True)
    print(f"  identity:     {settings.base_url}/identity/v3", flush=True)
    print(f"  data dir:     {settings.data_dir}", flush=True)
    print(
        f"  admin creds:  {settings.data_dir / 'openrc'} (password in "
        f"{settings.data_dir / 'admin-password'})",
        flush=True,
    )
    print(f"  clouds.yaml:  {clouds} (cloud name 'picocloud')", flush=True)
    print("  try:         export OS_CLOUD=picocloud; openstack token issue", flush=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=900,
        lifespan="off",
        server_header=False,
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises Ctrl-C after a clean shutdown
    finally:
        cloud.close()
    print("picocloud stopped", flush=True)
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from picocloud.identity.tokens import KeyRepository

    settings = _settings(args)
    repo = KeyRepository(settings.data_dir / "fernet-keys")
    repo.setup()
    primary = repo.rotate()
    print(f"rotated token keys in {repo.path}: primary key is now {primary}")
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    from picocloud.guest import GuestBuildError, build_tiny

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        output = build_tiny(args.output, args.cache_dir)
    except GuestBuildError as exc:
        print(f"picocloud: {exc}", file=sys.stderr)
        return 1
    print(f"built {args.name} image: {output} ({output.stat().st_size} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="picocloud", description=__doc__)
    parser.add_argument("--version", action="version", version=f"picocloud {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir", type=Path, help="state directory (default ~/.local/share/picocloud)"
        )
        p.add_argument("--config", help="TOML settings file")

    up = sub.add_parser("up", help="run the all-in-one cloud in the foreground")
    common(up)
    up.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="port to listen on (default 8780)")
    up.add_argument("--db", help="database URL (default SQLite in the data dir)")
    up.set_defaults(func=cmd_up)

    keys = sub.add_parser("keys", help="token key management")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="rotate the token keys")
    common(rotate)
    rotate.set_defaults(func=cmd_keys_rotate)

    image = sub.add_parser("image", help="picocloud's own guest images")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    image_build = image_sub.add_parser("build", help="build a guest image from Debian packages")
    image_build.add_argument("name", choices=["tiny"], help="the image to build")
    image_build.add_argument("--output", type=Path, required=True, help="qcow2 file to write")
    image_build.add_argument(
        "--cache-dir", type=Path, help="cache of .debs and builds (~/.cache/picocloud/guest)"
    )
    image_build.set_defaults(func=cmd_image_build)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
