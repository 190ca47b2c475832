"""Compute service (Nova v2.1): flavors, keypairs, servers, and the QEMU host agent."""
