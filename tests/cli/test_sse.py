"""The SSE parser, against the rules of the HTML standard's event-stream format."""

from verbatim_client.sse import ServerSentEvent, SSEParser, parse


def events(text: str, last_event_id: str | None = None) -> list[ServerSentEvent]:
    return list(parse(text.split("\n"), last_event_id))


def test_an_event_is_its_name_data_and_id_dispatched_by_a_blank_line() -> None:
    assert events('id: 1\nevent: status\ndata: {"status": "pending"}\n\n') == [
        ServerSentEvent("status", '{"status": "pending"}', "1")
    ]


def test_data_lines_join_with_newlines_and_only_one_leading_space_is_dropped() -> None:
    [event] = events("data:first\ndata:  second\ndata\n\n")
    assert event.data == "first\n second\n"
    assert event.event == "message"  # the default name


def test_comments_and_unknown_fields_are_ignored() -> None:
    assert events(": ping\n\n: ping\nfoo: bar\ndata: x\n\n") == [ServerSentEvent("message", "x", None)]


def test_an_event_without_data_is_not_dispatched_but_its_id_counts() -> None:
    found = events("id: 7\nevent: status\n\ndata: after\n\n")
    assert found == [ServerSentEvent("message", "after", "7")]


def test_the_last_id_sticks_to_later_events_that_carry_none() -> None:
    assert [e.id for e in events("id: 3\ndata: a\n\ndata: b\n\nid\ndata: c\n\n")] == ["3", "3", None]


def test_an_id_with_a_nul_is_ignored() -> None:
    assert [e.id for e in events("id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")] == ["1", "1"]


def test_the_last_event_id_moves_only_when_an_event_ends() -> None:
    """A connection cut after `id:` but before the blank line must resume before that event."""
    parser = SSEParser("4")
    for line in ("id: 5", "event: chunk", 'data: {"index": 5}'):
        assert parser.feed(line) is None
    assert parser.last_event_id == "4"
    assert parser.feed("") is not None
    assert parser.last_event_id == "5"


def test_an_event_cut_off_by_the_end_of_the_stream_is_dropped() -> None:
    assert events("data: whole\n\ndata: cut") == [ServerSentEvent("message", "whole", None)]


def test_retry_takes_digits_only() -> None:
    parser = SSEParser()
    for line in ("retry: 3000", "retry: soon", "retry: 1.5"):
        parser.feed(line)
    assert parser.retry_ms == 3000


def test_a_byte_order_mark_at_the_start_is_skipped() -> None:
    assert events("\ufeffdata: x\n\n") == [ServerSentEvent("message", "x", None)]


def test_a_resumed_parser_starts_from_the_id_it_is_given() -> None:
    assert events("data: x\n\n", last_event_id="9") == [ServerSentEvent("message", "x", "9")]
