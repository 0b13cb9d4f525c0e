"""Connecting to Ray: an existing cluster when an address is given, a private local one otherwise."""

from __future__ import annotations

import logging
import os
import socket

import ray

from maetune.cluster.local import free_port


class ClusterError(RuntimeError):
    """Ray cannot be reached or started; one line says why."""


def connect(address: str | None = None, num_cpus: int | None = None) -> str:
    """Connect to Ray once per process and return a description of where we are.

    Args:
        address: A cluster address (``ray://...``, ``host:port`` or ``auto``); ``None`` uses
            ``RAY_ADDRESS`` if set, else starts a local single-node cluster bound to this process.
        num_cpus: CPUs of a local cluster (``None``: all).
    """
    if ray.is_initialized():
        return "ray (already connected)"
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            _check_reachable(address)
            ray.init(address=address, logging_level=logging.WARNING)
            return f"ray cluster at {address}"
        # The dashboard serves Ray's state API, which Train's placement-group cleaner polls. The cleaner
        # finds the API by RAY_API_SERVER_ADDRESS (inherited by the workers) or, without it, by looking
        # for "the" cluster on the machine, which fails when another Ray runs here too.
        dashboard_port = free_port()
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dashboard_port}"
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=dashboard_port,
            logging_level=logging.WARNING,
            _node_ip_address="127.0.0.1",
        )
        return "local ray"
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterError(f"cannot connect to Ray at {address or 'a new local cluster'}: {first}") from None


def _check_reachable(address: str) -> None:
    """Fail in seconds, with one line, when nothing listens at a cluster address (Ray itself retries
    for minutes)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"Ray address {address!r} is not host:port (or ray://host:port, or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise ClusterError(f"Ray cluster at {address} is not reachable ({exc.strerror or exc})") from None


def disconnect() -> None:
    """Shut down the connection (and a local cluster this process started)."""
    if ray.is_initialized():
        ray.shutdown()
