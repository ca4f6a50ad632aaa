"""A registry's blob store for tests: a local HTTP server on 127.0.0.1, on a port the OS picks.

ECR answers GetDownloadUrlForLayer with a pre-signed S3 URL; in tests that URL points here, so
an image configuration is downloaded over real HTTP without leaving the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator


def digest_of(blob: bytes) -> str:
    return f"sha256:{hashlib.sha256(blob).hexdigest()}"


def config_blob(user: str = "10001:10001", volumes: tuple[str, ...] = ("/tmp",), architecture: str = "amd64",
                os: str = "linux") -> bytes:
    """An image configuration as `docker build` writes it (no `User`/`Volumes` when none is set)."""
    config: dict[str, Any] = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/app/server"]}
    if user:
        config["User"] = user
    if volumes:
        config["Volumes"] = {path: {} for path in volumes}
    return json.dumps({"architecture": architecture, "os": os, "config": config,
                       "rootfs": {"type": "layers", "diff_ids": []}}).encode()


@contextlib.contextmanager
def blob_server(blobs: dict[str, bytes]) -> Iterator[str]:
    """Serve `blobs` (digest -> bytes, read at each request) at `<url>/<digest>`; yields the url.
    Any other path answers 404."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            blob = blobs.get(self.path.lstrip("/"))
            self.send_response(200 if blob is not None else 404)
            self.send_header("Content-Length", str(len(blob or b"")))
            self.end_headers()
            self.wfile.write(blob or b"")

        def log_message(self, *args: Any) -> None:   # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
