"""A fake AssemblyAI REST API on 127.0.0.1, for running the real SDK against.

It speaks what the SDK's prerecorded flow calls — `POST /v2/upload`, `POST /v2/transcript`,
`GET /v2/transcript/{id}` — with the real API's shapes: `authorization` header checked on every
request (401 `{"error": ...}` otherwise), transcripts that go queued → processing → completed one
poll at a time, words in milliseconds. What it "hears" is canned: the words of `sentence`, spread
over the uploaded audio's duration (a chunk as `prepare` stores it: FLAC, or WAV). With
`speaker_labels: true` two speakers take turns, a sentence each (A, B, A, …): words carry `speaker`
and the response has `utterances`. An upload that is not audio ends its transcript `status=error`
with the provider's transcoding message. An unknown transcript id is a 400 "Transcript ID not
found". A test can script what it hears instead (`heard`: the words, speakers included, of an upload
of a given duration). Failures can be injected per route, and every request is recorded so tests
can count uploads and creates.
"""

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import av
import av.error

JFK = (
    "And so, my fellow Americans, ask not what your country can do for you. "
    "Ask what you can do for your country."
)
# The two sentences of `JFK`, which the fake gives to speakers A and B when asked to label them.
FIRST = "And so, my fellow Americans, ask not what your country can do for you."
SECOND = "Ask what you can do for your country."
UNSUPPORTED = (
    "Transcoding failed. File does not appear to contain audio. File type is text/plain (ASCII text)."
)
INVALID_KEY = "Authentication error, API token missing/invalid"


@dataclass
class Recorded:
    method: str
    route: str  # "upload", "create", "poll" or "unknown"
    path: str
    headers: dict[str, str]
    body: Any = None


@dataclass
class _Transcript:
    id: str
    request: dict[str, Any]
    duration: float | None  # None: the upload was not audio
    polls: int = 0


@dataclass
class FakeAssemblyAI:
    api_key: str = "test-key"
    sentence: str = JFK
    # What the fake hears in an upload this long (seconds, to the ms): words in the API's shape
    # (milliseconds, `speaker` when labelled); an upload of another length hears `sentence`.
    heard: dict[float, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""
    _uploads: dict[str, bytes] = field(default_factory=dict)
    _transcripts: dict[str, _Transcript] = field(default_factory=dict)
    _failures: dict[str, list[int]] = field(default_factory=dict)
    _delays: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, route: str, status: int, times: int = 1) -> None:
        """The next `times` requests to `route` ("upload", "create", "poll") answer `status`."""
        self._failures.setdefault(route, []).extend([status] * times)

    def delay_next(self, route: str, seconds: float) -> None:
        """The next request to `route` waits this long before answering (to trip client timeouts)."""
        self._delays.setdefault(route, []).append(seconds)

    def count(self, route: str) -> int:
        return sum(1 for r in self.requests if r.route == route)

    # --- request handling (called from the server's threads) -------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        route = _route(method, path)
        parsed = json.loads(body) if route == "create" and body else None
        with self._lock:
            self.requests.append(Recorded(method, route, path, headers, parsed if parsed else None))
            delay = self._delays[route].pop(0) if self._delays.get(route) else 0.0
            failure = self._failures[route].pop(0) if self._failures.get(route) else None
        if delay:
            time.sleep(delay)
        if headers.get("authorization") != self.api_key:
            return 401, {"error": INVALID_KEY}
        if failure is not None:
            return failure, {"error": f"injected failure {failure}"}
        with self._lock:
            if route == "upload":
                return 200, self._upload(body)
            if route == "create":
                return self._create(parsed or {})
            if route == "poll":
                return self._poll(path.rsplit("/", 1)[-1])
        return 404, {"error": "Not found"}

    def _upload(self, body: bytes) -> dict[str, Any]:
        upload_id = uuid.uuid4().hex
        self._uploads[upload_id] = body
        return {"upload_url": f"{self.base_url}/uploads/{upload_id}"}

    def _create(self, request: dict[str, Any]) -> tuple[int, Any]:
        audio = self._uploads.get(str(request.get("audio_url", "")).rsplit("/", 1)[-1])
        if audio is None:
            return 400, {"error": "Download error, unable to download the audio_url"}
        transcript = _Transcript(uuid.uuid4().hex, request, _audio_seconds(audio))
        self._transcripts[transcript.id] = transcript
        return 200, self._response(transcript, "queued")

    def _poll(self, transcript_id: str) -> tuple[int, Any]:
        transcript = self._transcripts.get(transcript_id)
        if transcript is None:
            return 400, {"error": "Transcript ID not found"}
        transcript.polls += 1
        if transcript.polls == 1:
            return 200, self._response(transcript, "processing")
        if transcript.duration is None:
            return 200, {**self._response(transcript, "error"), "error": UNSUPPORTED}
        return 200, self._completed(transcript, transcript.duration)

    def _response(self, transcript: _Transcript, status: str) -> dict[str, Any]:
        return {**transcript.request, "id": transcript.id, "status": status, "text": None, "words": None}

    def _completed(self, transcript: _Transcript, duration: float) -> dict[str, Any]:
        words = self.heard.get(round(duration, 3))
        if words is None:
            words = _spread(self.sentence.split(), duration)
            if transcript.request.get("speaker_labels"):
                _label_speakers(words)
        body = {
            **self._response(transcript, "completed"),
            "text": " ".join(w["text"] for w in words),
            "words": words,
            "language_code": transcript.request.get("language_code") or "en",
            "audio_duration": round(duration),
            "confidence": 0.9,
        }
        if transcript.request.get("speaker_labels"):
            body["utterances"] = _utterances(words)
        return body


def _route(method: str, path: str) -> str:
    if method == "POST" and path == "/v2/upload":
        return "upload"
    if method == "POST" and path == "/v2/transcript":
        return "create"
    if method == "GET" and path.startswith("/v2/transcript/"):
        return "poll"
    return "unknown"


def _audio_seconds(audio: bytes) -> float | None:
    try:
        with av.open(io.BytesIO(audio)) as container:
            frames = list(container.decode(audio=0))
    except (av.error.FFmpegError, ValueError, IndexError):
        return None
    samples = sum(f.samples for f in frames)
    return samples / frames[0].sample_rate if samples else None


def _spread(texts: list[str], duration: float) -> list[dict[str, Any]]:
    """The words evenly over the audio, each in the middle 80 % of its slot, in milliseconds."""
    slot = duration * 1000 / max(len(texts), 1)
    return [
        {
            "text": text,
            "start": int(i * slot + slot * 0.1),
            "end": int(i * slot + slot * 0.9),
            "confidence": 0.9,
            "speaker": None,
        }
        for i, text in enumerate(texts)
    ]


def _label_speakers(words: list[dict[str, Any]]) -> None:
    """A two-person dialogue: A and B take turns, one sentence each."""
    speaker = "A"
    for word in words:
        word["speaker"] = speaker
        if word["text"].endswith((".", "?", "!")):
            speaker = "B" if speaker == "A" else "A"


def _utterances(words: list[dict[str, Any]]) -> list[dict[str, Any]]:
    utterances: list[dict[str, Any]] = []
    for word in words:
        if not utterances or utterances[-1]["speaker"] != word["speaker"]:
            utterances.append({"speaker": word["speaker"], "words": [], "confidence": 0.9})
        utterances[-1]["words"].append(word)
    for u in utterances:
        u.update(
            text=" ".join(w["text"] for w in u["words"]),
            start=u["words"][0]["start"],
            end=u["words"][-1]["end"],
        )
    return utterances


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAssemblyAI

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else self._read_chunked()
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload = self.fake.handle(self.command, self.path, headers, body)
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left

    def _read_chunked(self) -> bytes:
        # httpx streams an opened file with `transfer-encoding: chunked`.
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            return b""
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return body
            body += self.rfile.read(size)
            self.rfile.readline()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(fake: FakeAssemblyAI | None = None) -> Iterator[FakeAssemblyAI]:
    """Run a fake on a free loopback port for the duration of the block."""
    fake = fake or FakeAssemblyAI()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-assemblyai", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
