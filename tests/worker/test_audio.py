"""worker.audio.iter_chunks: streaming decode and silence-aware chunking, on real speech."""

import io
import itertools
import json
import random
import re
import tracemalloc
import wave
from pathlib import Path

import av
import numpy as np
import pytest

import worker.audio
from core.media import probe
from tests.conftest import SPEECH
from worker.audio import SAMPLE_RATE, AudioChunk, AudioDecodeError, iter_chunks

JFK = SPEECH / "jfk" / "jfk.flac"
OPUS = SPEECH / "fleurs_en" / "fleurs-en-000.ogg"
LONGFORM = SPEECH / "longform" / "ljspeech_LJ001-0001_to_0032_concat.wav"
LONGFORM_CLIPS = json.loads(LONGFORM.with_suffix(".segments.json").read_text())["segments"]


def reference_pcm(path: Path) -> np.ndarray:
    """The whole file decoded in one go, 16 kHz mono s16: what the chunks must add up to."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    with av.open(str(path)) as container:
        frames = [*container.decode(audio=0), None]
        out = [o.to_ndarray().reshape(-1) for f in frames for o in resampler.resample(f)]
    return np.concatenate(out)


def chunk_pcm(chunk: AudioChunk) -> np.ndarray:
    """The chunk's samples, after checking its WAV header and that it spans [start, end)."""
    with wave.open(io.BytesIO(chunk.wav)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16_000, 1, 2)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert len(pcm) == round((chunk.end - chunk.start) * SAMPLE_RATE)
    return pcm


def assert_tiling(chunks: list[AudioChunk], duration: float, target: float) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0.0
    for before, after in itertools.pairwise(chunks):
        assert before.end == after.start  # exact: no gap, no overlap
    assert all(0 < c.end - c.start <= target for c in chunks)
    assert chunks[-1].end == pytest.approx(duration, abs=0.05)


def write_wav(path: Path, pcm: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.astype("<i2").tobytes())
    return path


def tone(seconds: float, rate: int = SAMPLE_RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def dbfs(pcm: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    return 20 * np.log10(rms / 32768) if rms else -np.inf


# --- the 231 s long-form reading ------------------------------------------------------------


@pytest.fixture(scope="module")
def longform_chunks() -> list[AudioChunk]:
    return list(iter_chunks(LONGFORM, 30))


def test_longform_chunks_tile_the_whole_recording(longform_chunks: list[AudioChunk]) -> None:
    with wave.open(str(LONGFORM)) as source:
        duration = source.getnframes() / source.getframerate()

    assert 4 <= len(longform_chunks) <= 12  # ~8 for 231 s cut every 21-30 s
    assert_tiling(longform_chunks, duration, target=30)


def test_longform_cuts_never_split_a_sentence(longform_chunks: list[AudioChunk]) -> None:
    pcm = np.concatenate([chunk_pcm(c) for c in longform_chunks])
    speech_level = dbfs(pcm)
    for cut in [c.end for c in longform_chunks[:-1]]:
        inside = [clip["id"] for clip in LONGFORM_CLIPS if clip["start"] + 0.05 < cut < clip["end"] - 0.05]
        if inside:
            # Not in one of the 0.3 s gaps between clips: it must be a natural pause, so even
            # the loudest 10 ms within 50 ms of the cut is far below the speech level.
            at = round(cut * SAMPLE_RATE)
            loudest = max(dbfs(pcm[i : i + 160]) for i in range(at - 800, at + 800, 160))
            assert loudest < speech_level - 20, f"cut at {cut:.2f} s inside {inside[0]}: {loudest:.0f} dBFS"


def test_longform_chunks_hold_every_sample_exactly_once(longform_chunks: list[AudioChunk]) -> None:
    expected = reference_pcm(LONGFORM)
    pieces = [chunk_pcm(c) for c in longform_chunks]

    assert sum(len(p) for p in pieces) == len(expected)
    assert np.array_equal(np.concatenate(pieces), expected)


# --- other real recordings ------------------------------------------------------------------


def test_file_shorter_than_target_is_one_chunk() -> None:
    chunks = list(iter_chunks(JFK, 30))  # 44.1 kHz 24-bit stereo FLAC

    assert len(chunks) == 1
    assert (chunks[0].index, chunks[0].start) == (0, 0.0)
    assert chunks[0].end == pytest.approx(11.0, abs=0.01)
    assert np.array_equal(chunk_pcm(chunks[0]), reference_pcm(JFK))


def test_ogg_opus_is_resampled_and_chunked() -> None:
    chunks = list(iter_chunks(OPUS, 5))

    assert len(chunks) >= 2
    assert_tiling(chunks, duration=10.56, target=5)
    assert np.array_equal(np.concatenate([chunk_pcm(c) for c in chunks]), reference_pcm(OPUS))


# --- synthetic edge cases -------------------------------------------------------------------


def test_audio_without_silence_falls_back_to_quietest_point(tmp_path: Path, monkeypatch) -> None:
    path = write_wav(tmp_path / "tone.wav", tone(100, rate=22_050), rate=22_050)
    fallbacks: list[int] = []
    quietest = worker.audio._quietest_offset

    def spy(window: np.ndarray) -> int:
        fallbacks.append(len(window))
        return quietest(window)

    monkeypatch.setattr(worker.audio, "_quietest_offset", spy)

    chunks = list(iter_chunks(path, 30))

    assert len(fallbacks) == len(chunks) - 1  # every cut needed the fallback
    assert_tiling(chunks, duration=100.0, target=30)
    assert all(c.end - c.start >= 21 for c in chunks[:-1])  # cut inside [0.7, 1] * target


def test_short_remainder_moves_the_last_cut_instead_of_becoming_a_sliver(tmp_path: Path) -> None:
    pcm = np.random.default_rng(7).normal(0, 3000, round(30.4 * SAMPLE_RATE)).astype(np.int16)
    # Two pauses in the search window: the one nearest the target would leave only 0.65 s.
    for pause_start in (25.0, 29.6):
        pcm[round(pause_start * SAMPLE_RATE) : round((pause_start + 0.3) * SAMPLE_RATE)] = 0
    path = write_wav(tmp_path / "noise.wav", pcm)

    chunks = list(iter_chunks(path, 30))

    assert [(c.start, c.end) for c in chunks] == [(0.0, 25.15), (25.15, 30.4)]


def test_file_exactly_target_long_is_one_chunk(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "thirty.wav", tone(30))

    assert [(c.start, c.end) for c in iter_chunks(path, 30)] == [(0.0, 30.0)]


def test_memory_stays_flat_on_a_20_minute_file(tmp_path: Path) -> None:
    # 7 s of tone then 0.5 s of silence, for 20 minutes: 38.4 MB once decoded at 16 kHz.
    pattern = np.concatenate([tone(7), np.zeros(SAMPLE_RATE // 2, dtype=np.int16)]).astype("<i2")
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        for _ in range(160):
            wav.writeframes(pattern.tobytes())
    rss_before = _rss_bytes()

    tracemalloc.start()
    try:
        end, rss_peak = 0.0, rss_before
        for chunk in iter_chunks(path, 30):  # consumed one by one, like the worker does
            end, rss_peak = chunk.end, max(rss_peak, _rss_bytes())
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert end == 1200.0
    # One 30 s chunk is 0.96 MB of PCM plus as much WAV; the whole file would be 38.4 MB.
    assert peak < 12_000_000
    # FFmpeg's own buffers are invisible to tracemalloc: check the process did not grow either.
    assert rss_peak - rss_before < 30_000_000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_target_below_one_second_is_refused() -> None:
    with pytest.raises(ValueError, match="target_seconds"):
        iter_chunks(JFK, 0.5)


# --- broken input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed",
    # With seed 0 the FLAC decoder raises on the garbage; with seed 1 it only logs
    # "invalid sync code" and would silently stop at 5.5 s: both must fail loudly.
    [0, 1],
)
def test_corrupt_second_half_is_a_decode_error(tmp_path: Path, seed: int) -> None:
    data = JFK.read_bytes()
    half = len(data) // 2
    path = tmp_path / "cut-off.flac"
    path.write_bytes(data[:half] + random.Random(seed).randbytes(len(data) - half))

    assert probe(path).codec == "flac"  # it starts like good audio
    with pytest.raises(AudioDecodeError) as caught:
        list(iter_chunks(path, 4))

    position = re.match(r"^audio could not be decoded at (\d+\.\d) s: \S", str(caught.value))
    assert position, str(caught.value)
    assert 4.0 < float(position.group(1)) < 6.0  # about half of the 11 s


def test_header_only_wav_has_no_audio(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16))

    with pytest.raises(AudioDecodeError, match=r"^no audio"):
        list(iter_chunks(path, 30))


def test_non_audio_file_is_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp3"
    path.write_text("not audio at all\n" * 100)

    with pytest.raises(AudioDecodeError, match=r"^file is not a decodable audio file: Invalid data"):
        list(iter_chunks(path, 30))


def test_missing_file_is_an_os_error_not_bad_audio(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(iter_chunks(tmp_path / "gone.wav", 30))
