"""The partition test's own logic: reading the workers' logs, comparing transcripts, cutting the
excerpt, naming the network. The test itself (root, namespaces, a fleet) runs in ./scripts/test."""

import json
import wave
from pathlib import Path

import pytest

from scripts import partition_test
from scripts.partition_test import HOSTS, Network, describe, differing, excerpt, late_results

JOB = "6f1c2d4e-0000-4000-8000-000000000001"


def log_line(event: str, **fields: object) -> str:
    return json.dumps({"ts": "2026-01-01T00:00:00.000+00:00", "level": "info", "event": event, **fields})


def test_late_results_are_the_last_result_event_of_each_chunk_of_the_job() -> None:
    log = "\n".join(
        [
            log_line("chunk.transcribed", job_id=JOB, chunk_index=0),
            "Traceback (most recent call last):",  # not JSON: skipped
            log_line("chunk.error", job_id=JOB, chunk_index=1, error="No route to host"),
            log_line("chunk.duplicate_discarded", job_id=JOB, chunk_index=0),
            log_line("chunk.transcribed", job_id="another-job", chunk_index=2),
            log_line("job.completed", job_id=JOB, chunks=3),
        ]
    )

    assert late_results(log, JOB) == {0: "chunk.duplicate_discarded", 1: "chunk.error"}


def test_a_transcript_differs_in_each_format_whose_bytes_differ() -> None:
    reference = {"txt": b"Hello.\n", "srt": b"1\n", "vtt": b"WEBVTT\n", "json": b"{}"}
    same_text_other_bytes = reference | {"txt": b"Hello.\r\n", "json": b"{ }"}

    assert differing(reference, dict(reference)) == []
    assert differing(reference, same_text_other_bytes) == ["txt", "json"]
    assert differing(reference, {"txt": b"Hello.\n"}) == ["srt", "vtt", "json"]


def test_late_results_are_described_in_words_by_chunk() -> None:
    text = describe({2: "chunk.error", 1: "chunk.duplicate_discarded"})

    assert text.index("chunk 1") < text.index("chunk 2")
    assert "discarded as a duplicate" in text
    assert "could not be sent" in text


def test_the_excerpt_ends_in_the_pause_after_the_last_utterance_that_fits(tmp_path: Path) -> None:
    rate = 16_000
    source = tmp_path / "talk.wav"
    with wave.open(str(source), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * rate * 10)
    segments = [{"start": 0, "end": 2.0}, {"start": 2.5, "end": 4.0}, {"start": 4.5, "end": 7.0}]
    layout = {"gap_seconds": 0.5, "segments": segments}
    source.with_suffix(".segments.json").write_text(json.dumps(layout))

    part = excerpt(source, 5.0, tmp_path / "part.wav")

    with wave.open(str(part), "rb") as cut:
        # The last utterance ending by 5 s ends at 4 s; the cut is half a gap later.
        assert cut.getnframes() == round(4.25 * rate)
        assert cut.getframerate() == rate


def test_the_network_names_fit_linux_interface_names_and_the_hosts_have_distinct_addresses() -> None:
    network = Network(tag="ab12", subnet=7)

    names = [network.bridge, *(network.cable(h) for h in HOSTS)]
    assert all(len(name) <= 15 for name in names)  # IFNAMSIZ - 1
    assert len(set(names)) == len(names)
    addresses = [network.services_ip, *(network.address(h) for h in HOSTS)]
    assert len(set(addresses)) == len(addresses)
    assert all(a.startswith("10.231.7.") for a in addresses)


def test_without_root_it_says_it_cannot_run_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)

    assert partition_test.main([]) == 2
    assert "need root" in capsys.readouterr().out
