"""worker.planning: windows of speech cut from a stream, on real speech and generated streams."""

import json
from collections.abc import Iterable, Iterator
from itertools import pairwise

import numpy as np
import pytest

import worker.planning
from tests.conftest import SPEECH
from worker.audio import SAMPLE_RATE, Pcm, decode_pcm
from worker.planning import FRAME, SMOOTH_FRAMES, Window, plan_windows, to_source_time

LONGFORM = SPEECH / "longform" / "ljspeech_LJ001-0001_to_0032_concat.wav"
LONGFORM_CLIPS = json.loads(LONGFORM.with_suffix(".segments.json").read_text())["segments"]


@pytest.fixture(scope="module")
def jfk() -> Pcm:
    """11 s of speech with pauses of up to 0.7 s between phrases."""
    return np.concatenate(list(decode_pcm(SPEECH / "jfk" / "jfk.flac")))


@pytest.fixture(scope="module")
def reading() -> Pcm:
    """The first minute of the long-form reading: clips 0.3 s apart, so speech never stops for long."""
    return np.concatenate(list(decode_pcm(LONGFORM)))[: 60 * SAMPLE_RATE]


# The most of the silence around speech a window may keep, on either side.
PAD = 1.0


def seconds(value: float) -> int:
    return round(value * SAMPLE_RATE)


def silence(duration: float) -> Pcm:
    return np.zeros(seconds(duration), dtype=np.int16)


def hiss(duration: float, seed: int = 1) -> Pcm:
    """Background noise around -60 dBFS: a quiet room, not speech."""
    return np.random.default_rng(seed).normal(0, 30, seconds(duration)).astype(np.int16)


def tone(duration: float) -> Pcm:
    t = np.arange(seconds(duration)) / SAMPLE_RATE
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def blocks(pcm: Pcm, size: int) -> Iterator[Pcm]:
    for start in range(0, len(pcm), size):
        yield pcm[start : start + size]


def plan(pcm: Pcm, max_seconds: float, block: int = 4096) -> list[Window]:
    return list(plan_windows(blocks(pcm, block), max_seconds))


def dbfs(pcm: Pcm) -> float:
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return 20 * np.log10(rms / 32768) if rms else -np.inf


def assert_well_formed(windows: list[Window], source: Pcm, max_seconds: float) -> None:
    """Numbered from 0; each at most `max_seconds` of audio, its spans in order and apart; windows in
    order without overlap; and the audio of each is exactly the source's samples at its spans."""
    assert [w.index for w in windows] == list(range(len(windows)))
    for window in windows:
        assert window.spans
        assert all(0 <= a < b <= len(source) for a, b in window.spans)
        assert all(b < c for (_, b), (c, _) in pairwise(window.spans))  # apart, or they would be one
        assert len(window.pcm) == sum(b - a for a, b in window.spans) <= max_seconds * SAMPLE_RATE
        expected = np.concatenate([source[a:b] for a, b in window.spans])
        assert np.array_equal(window.pcm, expected)
        assert window.span_seconds == [[a / SAMPLE_RATE, b / SAMPLE_RATE] for a, b in window.spans]
        assert (window.start, window.end) == (window.span_seconds[0][0], window.span_seconds[-1][1])
    for before, after in pairwise(windows):
        assert before.end <= after.start


def covered(windows: list[Window], start: float, end: float) -> float:
    """Seconds of [start, end) that some window's spans hold."""
    low, high = seconds(start), seconds(end)
    return sum(max(0, min(b, high) - max(a, low)) for w in windows for a, b in w.spans) / SAMPLE_RATE


# --- shape ----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_seconds", [30, 10])
def test_windows_are_at_most_the_maximum_in_order_disjoint_and_hold_the_original_samples(
    reading: Pcm, max_seconds: float
) -> None:
    windows = plan(reading, max_seconds)

    assert len(windows) >= 60 / max_seconds
    assert_well_formed(windows, reading, max_seconds)
    # Speech all the way: nearly all of the minute is kept, only breaths between clips may go.
    assert sum(len(w.pcm) for w in windows) > 0.95 * len(reading)


def test_a_short_recording_is_one_window(jfk: Pcm) -> None:
    windows = plan(jfk, 30)

    assert_well_formed(windows, jfk, 30)
    assert len(windows) == 1
    assert windows[0].start < 0.3 and windows[0].end > 10.5


@pytest.mark.parametrize("block", [160, 511, 4096, 7 * SAMPLE_RATE + 3, 10**9])
def test_the_same_windows_come_out_whatever_the_block_size(reading: Pcm, jfk: Pcm, block: int) -> None:
    source = np.concatenate([reading[: seconds(40)], silence(3), jfk])
    expected = plan(source, 10, block=4096)

    windows = plan(source, 10, block=block)

    assert [w.spans for w in windows] == [w.spans for w in expected]
    assert all(np.array_equal(w.pcm, e.pcm) for w, e in zip(windows, expected, strict=True))


# --- what is left out -----------------------------------------------------------------------


def test_long_silence_and_quiet_noise_between_speech_are_dropped(jfk: Pcm) -> None:
    source = np.concatenate([jfk, silence(6), jfk, hiss(6), jfk])  # 45 s, 12 s of it no speech

    windows = plan(source, 30)

    assert_well_formed(windows, source, 30)
    # Only a little of a gap, next to the speech, may be kept.
    assert covered(windows, 11 + PAD, 17 - PAD) == 0
    assert covered(windows, 28 + PAD, 34 - PAD) == 0
    for offset in (0, 17, 34):  # each recording's speech is kept
        assert covered(windows, offset + 0.5, offset + 10.5) > 8


@pytest.mark.parametrize(
    "source",
    [silence(40), hiss(40), tone(40), np.zeros(0, dtype=np.int16)],
    ids=["silence", "quiet noise", "tone", "nothing"],
)
def test_a_stream_without_speech_has_no_windows(source: Pcm) -> None:
    assert plan(source, 30) == []


def test_no_blocks_at_all_is_no_windows() -> None:
    assert list(plan_windows(iter([]), 30)) == []


# --- where windows are cut ------------------------------------------------------------------


@pytest.mark.parametrize("max_seconds", [30, 10])
def test_speech_that_runs_on_past_the_maximum_is_cut_inside_a_short_pause(
    reading: Pcm, max_seconds: float
) -> None:
    windows = plan(reading, max_seconds)
    speech_level = dbfs(reading)

    forced = [(a, b) for a, b in pairwise(windows) if a.end == b.start]  # nothing dropped between
    assert forced, "the reading should need cuts inside speech"
    for before, _ in forced:
        cut = before.end
        # The cut is searched in the last half of the window: windows come out nearly full.
        assert len(before.pcm) >= 0.5 * max_seconds * SAMPLE_RATE
        clip = [c["id"] for c in LONGFORM_CLIPS if c["start"] + 0.05 < cut < c["end"] - 0.05]
        if clip:
            # Inside a clip: it must be a pause between words, so even the loudest 10 ms within
            # 50 ms of the cut is far below the speech level.
            at = seconds(cut)
            loudest = max(dbfs(reading[i : i + 160]) for i in range(at - 800, at + 800, 160))
            assert loudest < speech_level - 20, f"cut at {cut:.2f} s inside {clip[0]}: {loudest:.0f} dBFS"


# --- streaming ------------------------------------------------------------------------------


class Gauges:
    """The largest the planner's buffers get, watched through instrumented subclasses."""

    def __init__(self) -> None:
        self.samples_held = 0
        self.frames_pending = 0
        self.frames_undecided = 0
        self.windows_waiting = 0


def test_a_20_minute_stream_is_planned_lazily_in_flat_memory(jfk: Pcm, monkeypatch) -> None:
    gauges = Gauges()

    class Samples(worker.planning._Samples):
        def append(self, pcm: Pcm) -> None:
            super().append(pcm)
            gauges.samples_held = max(gauges.samples_held, sum(len(b) for _, b in self._blocks))

    class Planner(worker.planning.Planner):
        def push(self, probs: np.ndarray, samples: worker.planning._Samples) -> None:
            super().push(probs, samples)
            gauges.frames_pending = max(gauges.frames_pending, len(self._pending))
            gauges.frames_undecided = max(gauges.frames_undecided, len(self._probs), len(self._speech))
            gauges.windows_waiting = max(gauges.windows_waiting, len(self.windows))

    monkeypatch.setattr(worker.planning, "_Samples", Samples)
    monkeypatch.setattr(worker.planning, "Planner", Planner)
    # 11 s of speech, 20 s of quiet noise, over and over: 20 minutes, 38.4 MB if it were all kept.
    pattern = np.concatenate([jfk, hiss(20)])
    repeats = -(-seconds(1200) // len(pattern))
    pulled = 0

    def stream() -> Iterable[Pcm]:
        nonlocal pulled
        for _ in range(repeats):
            for block in blocks(pattern, 4096):
                pulled += len(block)
                yield block.copy()  # a fresh block each time, as a decoder gives them

    lags, kept = [], 0
    for window in plan_windows(stream(), 30):  # consumed one by one, like `prepare` does
        lags.append((pulled - window.spans[-1][1]) / SAMPLE_RATE)
        kept += len(window.pcm)

    assert pulled >= seconds(1200)
    # The speech, and no more of the noise than the padding kept around it.
    assert repeats * seconds(8) < kept <= repeats * (len(jfk) + seconds(2 * PAD))
    # Each window was handed out as soon as it was final: the next speech had begun, no later.
    assert max(lags) < 35
    # Buffers stay small: decoded audio back to the first undecided frame (a gathered block and a
    # few frames), one window's kept frames, and a few frames' probabilities.
    assert gauges.samples_held < worker.planning._GATHER_SAMPLES + 4096 + 64 * FRAME
    assert gauges.frames_pending <= seconds(30) // FRAME + SMOOTH_FRAMES
    assert gauges.frames_undecided < 64
    assert gauges.windows_waiting <= 1


# --- times back on the original timeline ----------------------------------------------------


def test_a_window_time_maps_to_where_it_was_said() -> None:
    spans = [[1.0, 3.0], [10.0, 12.0], [20.0, 20.5]]

    assert to_source_time(spans, 0.0, is_end=False) == 1.0
    assert to_source_time(spans, 1.5, is_end=True) == 2.5
    assert to_source_time(spans, 3.5, is_end=False) == 11.5
    assert to_source_time(spans, 4.25, is_end=True) == 20.25


def test_at_a_join_a_start_goes_to_the_later_span_and_an_end_to_the_earlier() -> None:
    spans = [[1.0, 3.0], [10.0, 12.0]]

    assert to_source_time(spans, 2.0, is_end=False) == 10.0
    assert to_source_time(spans, 2.0, is_end=True) == 3.0


def test_a_time_past_the_windows_audio_is_its_last_span_end() -> None:
    spans = [[1.0, 3.0], [10.0, 12.0]]

    assert to_source_time(spans, 4.0, is_end=True) == 12.0
    assert to_source_time(spans, 30.0, is_end=False) == 12.0


def test_every_sample_of_a_window_maps_back_to_the_same_sample_of_the_source(jfk: Pcm) -> None:
    source = np.concatenate([jfk, silence(5), jfk])
    (window,) = plan(source, 30)
    assert len(window.spans) > 2

    for offset in range(0, len(window.pcm), 997):
        at = to_source_time(window.span_seconds, offset / SAMPLE_RATE, is_end=False)
        assert source[round(at * SAMPLE_RATE)] == window.pcm[offset], offset
