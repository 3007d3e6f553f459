"""A FHIR endpoint for tests: accepts ``PUT [base]/Binary/{id}`` and
``PUT [base]/DocumentReference/{id}`` and validates each body as FHIR R4 with
``fhir.resources.R4B`` (R4B is the R4-compatible release that package ships; R5 is its
default), answering 422 with an OperationOutcome when validation fails.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.documentreference import DocumentReference

MODELS: dict[str, Any] = {"Binary": Binary, "DocumentReference": DocumentReference}


class FhirServer:
    def __init__(self) -> None:
        self.resources: dict[str, dict[str, Any]] = {}
        self.puts: list[str] = []
        self.unavailable = False  # answer 503 to everything
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                if outer.unavailable:
                    self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    self._reply(503, {"resourceType": "OperationOutcome"})
                    return
                parts = self.path.strip("/").split("/")
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                if len(parts) != 3 or parts[1] not in MODELS or body.get("id") != parts[2]:
                    self._reply(400, {"resourceType": "OperationOutcome"})
                    return
                try:
                    MODELS[parts[1]].model_validate(body)
                except Exception as exc:
                    issue = {"severity": "error", "code": "invalid", "diagnostics": str(exc)[:500]}
                    self._reply(422, {"resourceType": "OperationOutcome", "issue": [issue]})
                    return
                key = f"{parts[1]}/{parts[2]}"
                with outer.lock:
                    created = key not in outer.resources
                    outer.resources[key] = body
                    outer.puts.append(key)
                self._reply(201 if created else 200, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)
