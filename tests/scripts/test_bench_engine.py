"""The engine benchmark's own logic: building a long file from clips, and its figures. No model runs."""

import argparse
import wave
from pathlib import Path

import pytest

from scripts.bench_engine import (
    PAUSES,
    SAMPLE_RATE,
    BenchFile,
    Clip,
    Measurement,
    decode,
    file_names,
    markdown,
    peaks_text,
    plan,
    sequence,
    speed_ratio,
    write_composite,
)


def clip(seconds: float, text: str) -> Clip:
    return Clip(b"\x01\x00" * round(seconds * SAMPLE_RATE), text)


def test_the_clips_repeat_in_order_with_pauses_until_the_target_is_reached() -> None:
    order = sequence([16_000, 32_000], target_samples=5 * 16_000)

    pauses = [round(p * SAMPLE_RATE) for p in PAUSES]
    # 1 s, pause, 2 s, pause, 1 s is 4.85 s: one more clip is needed to reach 5 s.
    assert order == [(0, 0), (1, pauses[0]), (0, pauses[1]), (1, pauses[2])]


def test_a_composite_file_lasts_its_clips_and_pauses_and_its_reference_follows_their_order(
    tmp_path: Path,
) -> None:
    clips = [clip(1.0, "alpha one"), clip(2.0, "bravo two"), clip(0.5, "charlie")]
    wav = tmp_path / "composite.wav"

    write_composite(clips, 7.0, wav)

    with wave.open(str(wav), "rb") as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getframerate()) == (1, 2, SAMPLE_RATE)
        seconds = audio.getnframes() / SAMPLE_RATE
    # a b c a b: 6.5 s of speech and four pauses between them.
    assert seconds == pytest.approx(6.5 + sum(PAUSES[:4]), abs=1e-3)
    assert seconds >= 7.0
    assert wav.with_suffix(".txt").read_text() == "alpha one bravo two charlie alpha one bravo two\n"
    assert not list(tmp_path.glob("*.partial"))


def test_a_clip_is_decoded_to_16_khz_mono(tmp_path: Path) -> None:
    source = tmp_path / "stereo.wav"
    with wave.open(str(source), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8_000)
        out.writeframes(b"\x10\x00\x20\x00" * 8_000 * 2)  # 2 s

    pcm = decode(source)

    assert len(pcm) // 2 == pytest.approx(2 * SAMPLE_RATE, abs=64)


def _measurement(engine: str, seconds: list[float], peaks: dict[str, float]) -> Measurement:
    file = BenchFile("longform", Path("longform.wav"), 231.0)
    return Measurement(file, engine, False, seconds, [0.05] * len(seconds), peaks)


def test_the_median_run_gives_the_wall_time_the_speed_and_the_ratios() -> None:
    batched = _measurement("batched", [12.0, 11.0, 30.0], {"process": 840.0})
    verbatim = _measurement("verbatim", [8.0, 7.0, 9.5], {"launcher": 60.0, "worker 1": 350.4})

    assert batched.wall == 12.0 and verbatim.wall == 8.0
    assert verbatim.speed == pytest.approx(231.0 / 8.0)
    assert speed_ratio(verbatim, batched) == "1.50x"
    assert speed_ratio(verbatim, None) == "-"


def test_peak_memory_reads_as_one_figure_or_the_sum_and_each_process() -> None:
    assert peaks_text({"process": 840.4}) == "840"
    peaks = {"launcher": 60.0, "API": 140.0, "Redis": 9.0, "worker 1": 350.0, "worker 2": 352.0}
    assert peaks_text(peaks) == "911 in all: workers 350 + 352, launcher 60, API 140, Redis 9"


def test_the_markdown_table_has_a_row_per_mode_with_ratios_against_the_same_words_setting() -> None:
    batched = _measurement("batched", [12.0], {"process": 840.0})
    whole = _measurement("transcribe", [24.0], {"process": 500.0})
    verbatim = _measurement("verbatim", [8.0], {"worker 1": 350.0, "worker 2": 350.0})

    table = markdown([whole, batched, verbatim], runs=1).splitlines()

    assert len(table) == 5 and table[0].startswith("| file | engine |")
    assert all(row.count("|") == table[0].count("|") for row in table)
    assert table[-1].endswith("| 1.50x | 3.00x |")


def test_faster_whisper_runs_only_on_the_shorter_files_and_verbatim_once_on_the_longer() -> None:
    longform = plan(BenchFile("longform", Path("l.wav"), 231.0), runs=3)
    assert [(engine, words) for engine, words, _ in longform] == [
        ("transcribe", False),
        ("transcribe", True),
        ("batched", False),
        ("batched", True),
        ("verbatim", False),
        ("verbatim", True),
    ]
    assert {runs for _, _, runs in longform} == {3}
    assert plan(BenchFile("3h", Path("3h.wav"), 10_800.0), runs=3) == [("verbatim", None, 1)]


def test_files_are_chosen_by_name() -> None:
    assert file_names("longform,3h") == ["longform", "3h"]
    with pytest.raises(argparse.ArgumentTypeError, match="choose from"):
        file_names("longform,1h")
