#!/usr/bin/env python3
"""Stand-in for NVIDIA's dcgm-exporter (llmops.gpu_serving test harness): no GPU, no DCGM.

What it keeps of the real exporter (NVIDIA/dcgm-exporter README and `dcgm-exporter --help`):
the listen address from DCGM_EXPORTER_LISTEN (its `--address`, default ":9400") and a Prometheus
text page at /metrics. The page is a real one, pasted in NVIDIA/dcgm-exporter#250 (the fixture
tests/fixtures/dcgm_exporter/metrics_4x-v100_dcgm-exporter-250.txt), served as it is: the
figures are not this machine's. Any other path answers 404, as the exporter's HTTP server does.
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE = (Path(__file__).resolve().parent / "metrics.txt").read_bytes()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        print(format % args, flush=True)


def main() -> None:
    host, _, port = os.environ.get("DCGM_EXPORTER_LISTEN", ":9400").rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    print(f"Starting webserver on {host or '0.0.0.0'}:{port} (llmops stand-in)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
