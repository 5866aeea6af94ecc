"""A scripted stand-in for the Anthropic Messages API, served on loopback.

Why: end-to-end tests drive the real ``claude -p`` CLI through mavps's hooks
with no network and no real model.  Claude Code only needs ``POST /v1/messages``
answered with the streamed (SSE) event sequence; everything else it may call is
answered quickly so it never hangs.

The "model" is a policy: ``policy(request_json) -> Text | Bash``.  Only
main-agent requests (those offering a ``Bash`` tool) reach the policy; side
requests (titles, summaries, ...) get a short ``Text`` so they cannot disturb a
scripted conversation.  Every request is recorded for assertions.

``ScriptedWorker`` is a ready-made policy following one convention: each line
``RUN: <shell command>`` in the latest user turn (the prompt, or a
``Stop hook feedback:`` message) is run as one Bash tool call per model turn,
in order; then the turn ends with ``Text("done")`` (``"nothing to do"`` if
there were no RUN lines).  A ``WRITE: <path> <text>`` line (path relative to the
session's working directory) becomes a ``Read`` then a ``Write`` of that file,
as a model must do to replace a file it has not read; a line ``END TURN``
ends the turn there (the lines after it are not run).  Its state comes only
from the conversation.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Union

__all__ = [
    "Action",
    "Bash",
    "FakeModel",
    "Policy",
    "RecordedRequest",
    "ScriptedWorker",
    "Text",
    "Tool",
    "is_main_request",
    "last_instruction",
    "run_lines",
]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MODEL_NAME = "claude-fake-model"
SIDE_REPLY = "ok"


@dataclass(frozen=True)
class Text:
    """End the turn with this text (stop_reason ``end_turn``)."""

    text: str


@dataclass(frozen=True)
class Bash:
    """Call the Bash tool with this command (stop_reason ``tool_use``)."""

    command: str


@dataclass(frozen=True)
class Tool:
    """Call any other tool (``Read``, ``Write``...) with this input (stop_reason ``tool_use``)."""

    name: str
    input: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, name: str, **fields: str) -> "Tool":
        return cls(name, tuple(fields.items()))


Action = Union[Text, Bash, Tool]
Policy = Callable[[dict[str, Any]], Action]


@dataclass
class RecordedRequest:
    """One HTTP request as the stand-in saw it."""

    method: str
    path: str
    body: Any
    time: float
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        """True for a main-agent Messages call (it offers a Bash tool)."""
        return (
            self.method == "POST"
            and self.path.split("?", 1)[0] == "/v1/messages"
            and isinstance(self.body, dict)
            and is_main_request(self.body)
        )


def is_main_request(body: dict[str, Any]) -> bool:
    """Main-agent requests are the ones that offer the ``Bash`` tool."""
    tools = body.get("tools") or []
    return any(isinstance(t, dict) and t.get("name") == "Bash" for t in tools)


# --------------------------------------------------------------------------
# The scripted worker policy


_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.DOTALL)
_RUN_LINE = re.compile(r"^[ \t]*RUN:[ \t]*(\S.*?)[ \t]*$", re.MULTILINE)
_STEP_LINE = re.compile(r"^[ \t]*(?:(RUN|WRITE):[ \t]*(\S.*?)|(END TURN))[ \t]*$", re.MULTILINE)
_CWD = re.compile(r"Working directory: (/\S+)")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's content as a list of blocks (a string becomes one text block)."""
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _is_tool_result_message(message: dict[str, Any]) -> bool:
    return any(b.get("type") == "tool_result" for b in _blocks(message))


def last_instruction(messages: list[dict[str, Any]]) -> tuple[int, str]:
    """Index and text of the latest user turn that is not a tool result.

    Why: tool results (and system reminders riding along with them) are
    progress, not instructions; the prompt or the Stop hook's feedback is.
    Returns ``(-1, "")`` when there is none.
    """
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") != "user" or _is_tool_result_message(message):
            continue
        texts = [b.get("text", "") for b in _blocks(message) if b.get("type") == "text"]
        return index, _REMINDER.sub("", "\n".join(t for t in texts if isinstance(t, str)))
    return -1, ""


def run_lines(text: str) -> list[str]:
    """The commands of every ``RUN: <command>`` line, in order."""
    return [m.group(1) for m in _RUN_LINE.finditer(text)]


def _tool_calls_after(messages: list[dict[str, Any]], index: int) -> list[str]:
    """Names of the tool calls the assistant made after ``index``."""
    calls = []
    for message in messages[index + 1 :]:
        if message.get("role") != "assistant":
            continue
        for block in _blocks(message):
            if block.get("type") == "tool_use":
                calls.append(str(block.get("name")))
    return calls


def working_directory(request: dict[str, Any]) -> str | None:
    """The session's working directory, as Claude Code states it in the system prompt."""
    found = _CWD.search(json.dumps(request.get("system", "")) + json.dumps(request.get("messages", [])))
    return found.group(1) if found else None


def steps(text: str, cwd: str | None) -> list[Action]:
    """The tool calls the instruction's RUN and WRITE lines ask for, in order, up to a line `END TURN`."""
    out: list[Action] = []
    for m in _STEP_LINE.finditer(text):
        if m.group(3):
            break
        if m.group(1) == "RUN":
            out.append(Bash(m.group(2)))
            continue
        rel, _, content = m.group(2).partition(" ")
        path = rel if rel.startswith("/") or cwd is None else f"{cwd.rstrip('/')}/{rel}"
        out += [Tool.of("Read", file_path=path), Tool.of("Write", file_path=path, content=content + "\n")]
    return out


class ScriptedWorker:
    """Run the latest user turn's ``RUN:`` lines, one Bash call per model turn.

    Stateless across calls on purpose: Claude Code resends the whole
    conversation each time, so progress is the number of Bash calls already
    made since the latest instruction.
    """

    def __init__(self, done_text: str = "done", idle_text: str = "nothing to do") -> None:
        self.done_text = done_text
        self.idle_text = idle_text

    def __call__(self, request: dict[str, Any]) -> Action:
        messages = request.get("messages") or []
        index, text = last_instruction(messages)
        todo = steps(text, working_directory(request))
        if not todo:
            return Text(self.idle_text)
        made = len(_tool_calls_after(messages, index))
        if made < len(todo):
            return todo[made]
        return Text(self.done_text)


# --------------------------------------------------------------------------
# Wire format


def _usage(output_tokens: int = 1) -> dict[str, int]:
    return {
        "input_tokens": 1,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _stop_reason(action: Action) -> str:
    return "end_turn" if isinstance(action, Text) else "tool_use"


def _content_block(action: Action) -> dict[str, Any]:
    if isinstance(action, Tool):
        return {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": action.name,
                "input": dict(action.input)}
    if isinstance(action, Bash):
        return {
            "type": "tool_use",
            "id": "toolu_" + uuid.uuid4().hex[:24],
            "name": "Bash",
            "input": {"command": action.command},
        }
    return {"type": "text", "text": action.text}


def message_json(action: Action, model: str = MODEL_NAME) -> dict[str, Any]:
    """The non-streamed Messages API response for ``action``."""
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [_content_block(action)],
        "stop_reason": _stop_reason(action),
        "stop_sequence": None,
        "usage": _usage(),
    }


def sse_events(action: Action, model: str = MODEL_NAME) -> list[tuple[str, dict[str, Any]]]:
    """The streamed response for ``action`` as ``(event, data)`` pairs."""
    message = message_json(action, model)
    block = message["content"][0]
    start = dict(message, content=[], stop_reason=None, usage=_usage(0))
    if block["type"] == "tool_use":
        opening = dict(block, input={})
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    else:
        opening = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": block["text"]}
    return [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": opening}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": 1},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def _sse_body(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def _count_tokens(body: Any) -> int:
    """A rough, deterministic token estimate (4 characters a token)."""
    return max(1, len(json.dumps(body)) // 4)


# --------------------------------------------------------------------------
# The server


class FakeModel:
    """Loopback HTTP server answering Claude Code's model calls from a policy.

    Use as a context manager; ``url`` goes into ``ANTHROPIC_BASE_URL``.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        side_text: str = SIDE_REPLY,
        model: str = MODEL_NAME,
    ) -> None:
        self.policy: Policy = policy if policy is not None else ScriptedWorker()
        self.side_text = side_text
        self.model = model
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._actions: list[Action] = []
        self.unknown_paths: list[str] = []
        self.errors: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ------------------------------------------------------------

    def start(self) -> FakeModel:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        server = ThreadingHTTPServer((HOST, 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-model", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeModel not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # records ----------------------------------------------------------------

    def requests(self) -> list[RecordedRequest]:
        """A copy of every request seen so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def main_requests(self) -> list[RecordedRequest]:
        """Only the main-agent Messages calls (the ones the policy answered)."""
        return [r for r in self.requests() if r.is_main]

    def actions(self) -> list[Action]:
        """What the policy answered to each main request, in order."""
        with self._lock:
            return list(self._actions)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _decide(self, body: dict[str, Any]) -> Action:
        if not is_main_request(body):
            return Text(self.side_text)
        try:
            action = self.policy(body)
        except Exception as exc:  # a broken policy must not hang the CLI
            log.exception("fake model policy failed")
            with self._lock:
                self.errors.append(f"policy: {exc!r}")
            action = Text(f"policy error: {exc!r}")
        with self._lock:
            self._actions.append(action)
        return action


def _make_handler(model: FakeModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "mavps-fake-model/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("fake model: " + format, *args)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0] or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            raw = self._read_body() if self.command in ("POST", "PUT", "PATCH") else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            model._record(
                RecordedRequest(
                    method=self.command,
                    path=self.path,
                    body=body,
                    time=time.time(),
                    headers={k.lower(): v for k, v in self.headers.items()},
                )
            )
            route = self.path.split("?", 1)[0].rstrip("/")
            if self.command == "POST" and route == "/v1/messages" and isinstance(body, dict):
                action = model._decide(body)
                if body.get("stream"):
                    self._send(200, _sse_body(sse_events(action, model.model)), "text/event-stream")
                else:
                    self._send_json(200, message_json(action, model.model))
            elif self.command == "POST" and route == "/v1/messages/count_tokens":
                self._send_json(200, {"input_tokens": _count_tokens(body)})
            elif route in ("", "/v1") and self.command in ("GET", "HEAD"):
                self._send_json(200, {})
            else:
                log.warning("fake model: unknown %s %s", self.command, self.path)
                with model._lock:
                    model.unknown_paths.append(f"{self.command} {self.path}")
                error = {"type": "error", "error": {"type": "not_found_error", "message": "not found"}}
                self._send_json(404, error)

        def _send_json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _send(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", "req_" + uuid.uuid4().hex[:24])
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()

        def _safe(self) -> None:
            try:
                self._handle()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            except Exception as exc:
                log.exception("fake model handler failed")
                with model._lock:
                    model.errors.append(f"{self.command} {self.path}: {exc!r}")
                self.close_connection = True

        do_GET = do_POST = do_HEAD = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _safe

    return Handler
