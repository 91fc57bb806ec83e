"""A local stand-in for the Anthropic Messages API, for testing the real SDK client.

``FakeAnthropic`` is a stdlib HTTP server on 127.0.0.1 (random port, a thread of its own)
answering ``POST /v1/messages`` (and ``GET /v1/models``) as the API does: a JSON ``message`` with text and
``tool_use`` content blocks, ``stop_reason`` and ``usage``, or an error body
(``{"type": "error", "error": {"type": ..., "message": ...}}``) with its status (429
``rate_limit_error``, 529 ``overloaded_error``, ...). Each test scripts the answers as a
queue and reads back every request received (path, headers, JSON body), so it can assert
the system prompt and the tool results the client sent.

Like the real API, it refuses (400 ``invalid_request_error``) a conversation where an
assistant turn's ``tool_use`` is not answered by a ``tool_result`` in the next user turn,
so a client that forgets one fails here as it would in production. An unscripted request
gets a 400 too (not retried by a client), naming the request, so a test fails clearly.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status and a JSON body (``model`` filled from the request when None)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    """One request as received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def tool_results(self) -> list[dict[str, Any]]:
        """The ``tool_result`` blocks of the last user turn."""
        content = self.body["messages"][-1]["content"]
        return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] if isinstance(content, list) else []

    def last_user_text(self) -> str:
        """All text of the last user turn (string content, text blocks and tool results)."""
        content = self.body["messages"][-1]["content"]
        if isinstance(content, str):
            return content
        out = []
        for b in content:
            if b.get("type") == "text":
                out.append(b["text"])
            elif b.get("type") == "tool_result":
                c = b.get("content")
                out.append(c if isinstance(c, str) else "".join(x.get("text", "") for x in c or []))
        return "\n".join(out)


def message(
    *blocks: dict[str, Any],
    stop_reason: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_write: int = 0,
    cache_read: int = 0,
    model: str | None = None,
) -> Reply:
    """A successful answer made of content blocks (see ``text`` and ``tool_use``);
    ``stop_reason`` defaults to ``tool_use`` when a block is a tool call, else ``end_turn``."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    body = {
        "id": f"msg_fake{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": list(blocks),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
        },
    }
    return Reply(200, body)


def text(s: str) -> dict[str, Any]:
    return {"type": "text", "text": s}


def tool_use(name: str, **args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_fake{next(_ids)}", "name": name, "input": args}


def error(status: int, kind: str, msg: str = "", headers: dict[str, str] | None = None) -> Reply:
    """An API error: e.g. ``error(429, "rate_limit_error")``, ``error(529, "overloaded_error")``."""
    return Reply(status, {"type": "error", "error": {"type": kind, "message": msg or kind.replace("_", " ")}}, headers or {})


def _conversation_error(body: dict[str, Any]) -> str | None:
    """What the real API would refuse in ``body``: missing fields, unanswered tool calls."""
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    msgs = body["messages"]
    if not msgs or msgs[0].get("role") != "user":
        return "messages: first message must use the user role"
    for i, m in enumerate(msgs):
        if m.get("role") != "assistant" or not isinstance(m.get("content"), list):
            continue
        asked = {b["id"] for b in m["content"] if b.get("type") == "tool_use"}
        if not asked:
            continue
        nxt = msgs[i + 1]["content"] if i + 1 < len(msgs) else []
        answered = {b.get("tool_use_id") for b in nxt if isinstance(b, dict) and b.get("type") == "tool_result"} if isinstance(nxt, list) else set()
        if asked - answered:
            return f"messages.{i + 1}: tool_use ids were found without tool_result blocks immediately after: {sorted(asked - answered)}"
    return None


class FakeAnthropic:
    """The server; use as a context manager. ``push`` scripts answers, ``requests`` holds
    what was received, ``base_url`` is what the SDK client is given."""

    def __init__(self, models: tuple[str, ...] = ("claude-sonnet-4-6", "claude-opus-4-6", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001")) -> None:
        self.models = models
        """What ``GET /v1/models`` lists (the proposer checks its model against it)."""
        self.model_lists = 0
        """``GET /v1/models`` requests received (kept out of ``requests``)."""
        self.requests: list[Recorded] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/v1/models":
                    reply = error(404, "not_found_error", f"fake: no route {self.path}")
                else:
                    with fake._lock:
                        fake.model_lists += 1
                    data = [{"type": "model", "id": m, "display_name": m, "created_at": "2026-01-01T00:00:00Z"} for m in fake.models]
                    reply = Reply(
                        200, {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}
                    )
                out = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = {"_raw": raw.decode(errors="replace")}
                reply = fake._answer(Recorded("POST", self.path, dict(self.headers), body))
                out = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.send_header("request-id", f"req_fake{next(_ids)}")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-anthropic", daemon=True)
        self._thread.start()

    def _answer(self, req: Recorded) -> Reply:
        with self._lock:
            self.requests.append(req)
            if req.path.split("?")[0] != "/v1/messages":
                return error(404, "not_found_error", f"fake: no route {req.path}")
            problem = _conversation_error(req.body)
            if problem:
                return error(400, "invalid_request_error", problem)
            if not self._queue:
                return error(400, "invalid_request_error", f"fake: no scripted answer left for request {len(self.requests)}")
            reply = self._queue.popleft()
        if reply.status == 200 and reply.body.get("model") is None:
            reply = Reply(200, {**reply.body, "model": req.body.get("model")}, reply.headers)
        return reply

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted answers not yet given."""
        with self._lock:
            return len(self._queue)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
