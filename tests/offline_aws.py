"""AWS for tests, never the real one: moto in-process, or a moto server on 127.0.0.1 for the console script."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

ESTATE = Path(sys.executable).with_name("estate")   # the installed console script


def fake_environment(region: str, endpoint: str | None = None) -> dict[str, str]:
    """Fake credentials, no profile files, and with `endpoint` every AWS call sent there."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": region, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    return {**env, "AWS_ENDPOINT_URL": endpoint} if endpoint else env


@contextlib.contextmanager
def mocked(monkeypatch: pytest.MonkeyPatch, region: str) -> Iterator[None]:
    """moto for every call made in-process, in the fake environment."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in fake_environment(region).items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A fresh moto server on a free local port; yields its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def run_estate(endpoint: str, region: str, *args: str) -> subprocess.CompletedProcess:
    """`estate ARGS` in a clean environment whose only AWS is `endpoint`."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
           **fake_environment(region, endpoint)}
    return subprocess.run([str(ESTATE), *args], env=env, capture_output=True, text=True, timeout=60)
