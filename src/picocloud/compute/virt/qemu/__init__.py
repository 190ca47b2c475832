"""The QEMU hypervisor driver: `driver` (the protocol), `qmp`, `cmdline`, `devices`, `layout`,
`process` and the per-guest `supervisor`."""
