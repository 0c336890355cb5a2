"""A local stand-in for the SageMaker runtime in front of an endpoint with production variants.

It speaks what boto3's ``sagemaker-runtime`` client sends and reads (the REST-JSON protocol of
the SageMaker Runtime API reference):
- ``POST /endpoints/<name>/invocations`` and ``/invocations-response-stream``; the latter answers
  ``application/vnd.amazon.eventstream`` messages, one ``PayloadPart`` event per chunk (the
  binary AWS event-stream framing: prelude, CRC32s, string headers);
- ``X-Amzn-SageMaker-Target-Variant`` picks the variant (routing by weight otherwise), and the
  answer names the variant in ``x-Amzn-Invoked-Production-Variant``;
- a request without a SigV4 ``Authorization`` header is refused; the signature is not checked
  (there is no secret to check it with);
- an unknown endpoint or variant is a 400 ``ValidationError``; a failing model a 424
  ``ModelError`` (the status InvokeEndpoint documents for a container error).

Behind each variant it plays the LMI container with its vLLM rolling batch and forwards to a
real vLLM OpenAI-compatible server: a ``{"messages": ...}`` body is LMI's chat schema (OpenAI's;
streamed as JSON lines, LMI's default), an ``{"inputs", "parameters"}`` body is LMI's own schema,
answered with ``details.prefill`` when ``decoder_input_details`` is set (from vLLM's
``prompt_logprobs``).
"""

from __future__ import annotations

import json
import random
import struct
import threading
import urllib.error
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Variant:
    name: str
    base_url: str  # the vLLM server, http://host:port/v1
    served_name: str
    weight: float = 1.0
    fail: bool = False  # every request a ModelError
    drop_logprobs: bool = False  # a container that ignores decoder_input_details


@dataclass
class Endpoint:
    name: str
    variants: dict[str, Variant]
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (variant, path kind)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, target: str | None) -> Variant | None:
        if target:
            return self.variants.get(target)
        live = [v for v in self.variants.values() if v.weight > 0]
        return random.choices(live, weights=[v.weight for v in live])[0]  # noqa: S311 - routing, not secrets


class RefusalError(Exception):
    """An error answer of the runtime API: status, x-amzn-ErrorType, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def event_message(payload: bytes, event_type: str = "PayloadPart") -> bytes:
    """One AWS event-stream message (application/vnd.amazon.eventstream)."""
    headers = b""
    for name, value in (
        (":event-type", event_type),
        (":content-type", "application/octet-stream"),
        (":message-type", "event"),
    ):
        raw = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _post(url: str, body: dict[str, Any], timeout: float = 300.0) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - local test server
        return json.loads(resp.read())


def lmi_answer(variant: Variant, body: dict[str, Any]) -> dict[str, Any]:
    """LMI's rolling-batch schema answered from vLLM's completions API."""
    params = body.get("parameters") or {}
    want_prefill = bool(params.get("details") and params.get("decoder_input_details"))
    request: dict[str, Any] = {
        "model": variant.served_name,
        "prompt": body["inputs"],
        "max_tokens": int(params.get("max_new_tokens", 30)),
        "temperature": 0.0,
    }
    if want_prefill:
        request["prompt_logprobs"] = 0
    answer = _post(f"{variant.base_url}/completions", request)
    choice = answer["choices"][0]
    details: dict[str, Any] = {
        "finish_reason": choice.get("finish_reason"),
        "generated_tokens": answer.get("usage", {}).get("completion_tokens"),
        "inputs": body["inputs"],
    }
    if want_prefill and not variant.drop_logprobs:
        root = variant.base_url.rsplit("/v1", 1)[0]
        first = _post(f"{root}/tokenize", {"model": variant.served_name, "prompt": body["inputs"]})["tokens"][0]
        prefill = [{"id": first, "text": "", "log_prob": None}]
        for entry in choice["prompt_logprobs"][1:]:
            ((token_id, info),) = entry.items()
            prefill.append({"id": int(token_id), "text": info.get("decoded_token"), "log_prob": info["logprob"]})
        details["prefill"] = prefill
    return {"generated_text": choice["text"], "details": details}


class Handler(BaseHTTPRequestHandler):
    server: RuntimeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _error(self, status: int, code: str, message: str) -> None:
        data = json.dumps({"message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-ErrorType", code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[Endpoint, Variant, bool]:
        if not (self.headers.get("Authorization") or "").startswith("AWS4-HMAC-SHA256 Credential="):
            raise RefusalError(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        parts = self.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "endpoints" or parts[2] not in ("invocations", "invocations-response-stream"):
            raise RefusalError(404, "UnknownOperationException", f"no operation at {self.path}")
        endpoint = self.server.endpoints.get(parts[1])
        if endpoint is None:
            raise RefusalError(400, "ValidationError", f"Endpoint {parts[1]} of account 123456789012 not found.")
        target = self.headers.get("X-Amzn-SageMaker-Target-Variant")
        variant = endpoint.pick(target)
        if variant is None:
            raise RefusalError(400, "ValidationError", f"Variant {target} not found for endpoint {endpoint.name}.")
        return endpoint, variant, parts[2] == "invocations-response-stream"

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            endpoint, variant, stream = self._route()
            with endpoint.lock:
                endpoint.calls[(variant.name, "stream" if stream else "invoke")] += 1
            if variant.fail:
                raise RefusalError(424, "ModelError", 'Received server error (500) from primary with message "boom"')
            body = json.loads(raw)
            if stream:
                self._stream(variant, body)
                return
            answer = lmi_answer(variant, body) if "inputs" in body else self._chat(variant, body)
        except RefusalError as refusal:
            self._error(refusal.status, refusal.code, refusal.message)
            return
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            self._error(424, "ModelError", f"Received client error from primary: {exc}")
            return
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-Amzn-Invoked-Production-Variant", variant.name)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @staticmethod
    def _chat(variant: Variant, body: dict[str, Any]) -> Any:
        return _post(f"{variant.base_url}/chat/completions", {**body, "model": variant.served_name})

    def _stream(self, variant: Variant, body: dict[str, Any]) -> None:
        request = {**body, "model": variant.served_name, "stream": True}
        upstream = urllib.request.urlopen(  # noqa: S310 - local test server
            urllib.request.Request(  # noqa: S310 - local test server
                f"{variant.base_url}/chat/completions",
                json.dumps(request).encode(),
                {"Content-Type": "application/json"},
            ),
            timeout=300,
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.amazon.eventstream")
        self.send_header("x-Amzn-Invoked-Production-Variant", variant.name)
        self.send_header("Connection", "close")
        self.end_headers()
        with upstream:
            for raw_line in upstream:
                line = raw_line.strip()
                if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                    continue
                # LMI streams chat chunks as JSON lines unless its output formatter is sse.
                self.wfile.write(event_message(line[5:].strip() + b"\n"))
                self.wfile.flush()
        self.close_connection = True


class RuntimeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, endpoints: dict[str, Endpoint]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.endpoints = endpoints
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> RuntimeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
