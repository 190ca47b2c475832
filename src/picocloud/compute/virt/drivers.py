"""Importing this module registers every hypervisor driver by name."""

from picocloud.compute.virt import fake as fake
from picocloud.compute.virt.qemu import driver as qemu  # noqa: F401
