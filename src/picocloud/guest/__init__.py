"""picocloud's own guest images, built from Debian packages (`picocloud image build tiny`)."""

from picocloud.guest.build import GuestBuildError, build_tiny, cached_tiny

__all__ = ["GuestBuildError", "build_tiny", "cached_tiny"]
