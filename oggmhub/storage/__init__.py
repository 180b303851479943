"""Disk space: home quotas from the catalog, usage scans and the hub's free-space rule
(pure logic, both backends; the local backend's loop-mounted home images use it)."""
