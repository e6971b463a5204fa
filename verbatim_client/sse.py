"""Server-sent events, parsed as the WHATWG HTML standard says a browser's EventSource does.

Kept apart from HTTP so the parsing rules (comments, multi-line data, a sticky last event id, the
`retry` field) can be tested line by line, and any line source can feed it.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None
    retry_ms: int | None = None


class SSEParser:
    """Feed it one line at a time (without its line ending); an empty line dispatches an event.

    `last_event_id` is what a reconnecting client sends as `Last-Event-ID`. It changes only when an
    event is dispatched (the standard's "last event ID string"), never on an `id:` line alone: a
    connection cut between an event's id and its end resumes before that event, not after it. It
    outlives the event that set it, so events that carry no id keep the one before.
    """

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.retry_ms: int | None = None
        self._id = last_event_id
        self._event = ""
        self._data: list[str] = []
        self._first = True

    def feed(self, line: str) -> ServerSentEvent | None:
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # a comment: servers send them to keep idle connections open
            return None
        name, _, value = line.partition(":")
        self._field(name, value.removeprefix(" "))
        return None

    def _field(self, name: str, value: str) -> None:
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value or None
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        # Any other field is ignored, as the standard says.

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:  # an event without data is not dispatched (its id still counts)
            return None
        return ServerSentEvent(event, "\n".join(data), self.last_event_id, self.retry_ms)


def parse(lines: Iterable[str], last_event_id: str | None = None) -> Iterator[ServerSentEvent]:
    """The events in a stream of lines; an event cut off by the stream's end is dropped."""
    parser = SSEParser(last_event_id)
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
