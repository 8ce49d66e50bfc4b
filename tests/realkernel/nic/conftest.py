"""The NIC check is a script run by hand on a host with an SR-IOV NIC, not a test:
the suite never collects it (QEMU has no SR-IOV NIC model)."""

collect_ignore_glob = ["*.py"]
