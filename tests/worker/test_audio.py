"""worker.audio: streaming decode to 16 kHz mono, pauses in a window, and the chunks' FLAC files."""

import random
import re
import tracemalloc
import wave
from collections.abc import Generator
from pathlib import Path

import av
import numpy as np
import pytest

from core.media import probe
from storage.keys import chunk_key
from tests.conftest import SPEECH
from worker.audio import SAMPLE_RATE, AudioDecodeError, decode_pcm, encode_flac, read_audio, silence_near_end

JFK = SPEECH / "jfk" / "jfk.flac"
OPUS = SPEECH / "fleurs_en" / "fleurs-en-000.ogg"
LONGFORM = SPEECH / "longform" / "ljspeech_LJ001-0001_to_0032_concat.wav"


def reference_pcm(path: Path) -> np.ndarray:
    """The whole file decoded in one go, 16 kHz mono s16: what the streamed blocks must add up to."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    with av.open(str(path)) as container:
        frames = [*container.decode(audio=0), None]
        out = [o.to_ndarray().reshape(-1) for f in frames for o in resampler.resample(f)]
    return np.concatenate(out)


def decoded(path: Path) -> np.ndarray:
    blocks = list(decode_pcm(path))
    assert all(b.dtype == np.int16 and b.ndim == 1 and len(b) for b in blocks)
    return np.concatenate(blocks)


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


# --- streaming decode -----------------------------------------------------------------------


def test_a_long_recording_streams_every_sample_exactly_once() -> None:
    pcm = decoded(LONGFORM)

    assert len(pcm) == pytest.approx(231.05 * SAMPLE_RATE, abs=SAMPLE_RATE // 100)
    assert np.array_equal(pcm, reference_pcm(LONGFORM))


def test_high_rate_stereo_flac_is_downmixed_to_16_khz_mono() -> None:
    pcm = decoded(JFK)  # 44.1 kHz 24-bit stereo

    assert len(pcm) / SAMPLE_RATE == pytest.approx(11.0, abs=0.01)
    assert np.array_equal(pcm, reference_pcm(JFK))


def test_ogg_opus_is_resampled() -> None:
    pcm = decoded(OPUS)

    assert len(pcm) / SAMPLE_RATE == pytest.approx(10.56, abs=0.01)
    assert np.array_equal(pcm, reference_pcm(OPUS))


def test_a_change_of_sample_rate_mid_stream_keeps_the_timeline_going(tmp_path: Path) -> None:
    # Two MP3 files joined, 22.05 kHz then 44.1 kHz: one stream whose frames change rate half-way.
    path = tmp_path / "joined.mp3"
    with path.open("wb") as out:
        for rate, seconds in ((22_050, 1.0), (44_100, 2.0)):
            part = tmp_path / f"part-{rate}.mp3"
            _encode(part, tone(seconds, rate), rate, "libmp3lame")
            out.write(part.read_bytes())

    # MP3 pads each file by a frame or so; the point is that nothing is refused or lost.
    assert len(decoded(path)) / SAMPLE_RATE == pytest.approx(3.0, abs=0.2)


def _encode(path: Path, pcm: np.ndarray, rate: int, codec: str) -> None:
    # No ID3 tag or Xing header: joined files then read as one stream, as a live MP3 stream would.
    with av.open(str(path), "w", options={"id3v2_version": "0", "write_xing": "0"}) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


def test_memory_stays_flat_while_a_20_minute_file_is_decoded(tmp_path: Path) -> None:
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
        samples, largest, rss_peak = 0, 0, rss_before
        for number, block in enumerate(decode_pcm(path)):  # one by one, like the planner takes them
            samples, largest = samples + len(block), max(largest, len(block))
            if number % 64 == 0:
                rss_peak = max(rss_peak, _rss_bytes())
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert samples == 1200 * SAMPLE_RATE
    assert largest < SAMPLE_RATE  # blocks of one decoded frame, never the whole file
    assert peak < 4_000_000
    # FFmpeg's own buffers are invisible to tracemalloc: check the process did not grow either.
    assert rss_peak - rss_before < 20_000_000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_blocks_come_out_before_the_file_is_read_to_the_end() -> None:
    blocks = decode_pcm(LONGFORM)
    assert isinstance(blocks, Generator)
    first = next(blocks)
    blocks.close()  # a `prepare` that stops early (a tier limit) closes the file

    assert 0 < len(first) < SAMPLE_RATE


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
        list(decode_pcm(path))

    position = re.match(r"^audio could not be decoded at (\d+\.\d) s: \S", str(caught.value))
    assert position, str(caught.value)
    assert 4.0 < float(position.group(1)) < 6.0  # about half of the 11 s


def test_header_only_wav_has_no_audio(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16))

    with pytest.raises(AudioDecodeError, match=r"^no audio"):
        list(decode_pcm(path))


def test_non_audio_file_is_a_decode_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp3"
    path.write_text("not audio at all\n" * 100)

    with pytest.raises(AudioDecodeError, match=r"^file is not a decodable audio file: Invalid data"):
        list(decode_pcm(path))


def test_missing_file_is_an_os_error_not_bad_audio(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(decode_pcm(tmp_path / "gone.wav"))


# --- pauses ---------------------------------------------------------------------------------


def noise(seconds: float, level: float = 3000, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, level, round(seconds * SAMPLE_RATE)).astype(np.int16)


def test_the_pause_nearest_the_end_of_a_window_is_found() -> None:
    pcm = noise(10)
    for start in (2.0, 7.0):  # two clear pauses: the later one is nearer the end
        pcm[round(start * SAMPLE_RATE) : round((start + 0.4) * SAMPLE_RATE)] = 0

    middle = silence_near_end(pcm)

    assert middle is not None
    assert middle / SAMPLE_RATE == pytest.approx(7.2, abs=0.02)


def test_a_shorter_or_louder_pause_is_taken_when_there_is_no_clear_one() -> None:
    pcm = noise(10)
    # 160 ms at 14 dB below the noise: too short and too loud for the first attempts.
    quiet = slice(round(6.0 * SAMPLE_RATE), round(6.16 * SAMPLE_RATE))
    pcm[quiet] = (pcm[quiet] / 5).astype(np.int16)

    middle = silence_near_end(pcm)

    assert middle is not None
    assert middle / SAMPLE_RATE == pytest.approx(6.08, abs=0.02)


def test_what_counts_as_a_pause_is_relative_to_the_windows_loudness() -> None:
    quiet_recording = noise(6, level=300)
    quiet_recording[3 * SAMPLE_RATE : round(3.5 * SAMPLE_RATE)] //= 40  # far below its own level

    middle = silence_near_end(quiet_recording)

    assert middle is not None
    assert middle / SAMPLE_RATE == pytest.approx(3.25, abs=0.02)


@pytest.mark.parametrize(
    "pcm", [noise(5), tone(5), np.zeros(0, dtype=np.int16)], ids=["noise", "tone", "empty"]
)
def test_no_pause_is_no_answer(pcm: np.ndarray) -> None:
    assert silence_near_end(pcm) is None


# --- chunk files ----------------------------------------------------------------------------


def test_a_chunk_is_stored_as_lossless_flac_and_read_back_as_the_models_input(tmp_path: Path) -> None:
    pcm = reference_pcm(JFK)[: 7 * SAMPLE_RATE]
    path = tmp_path / chunk_key("job", 3).rsplit("/", 1)[-1]
    data = encode_flac(pcm)
    path.write_bytes(data)

    audio = read_audio(path)

    assert path.suffix == ".flac" and data.startswith(b"fLaC")
    assert len(data) < pcm.nbytes * 0.8  # smaller than the PCM it holds
    assert audio.dtype == np.float32
    assert np.array_equal(audio, pcm.astype(np.float32) / 32768.0)  # exactly what was planned


def test_a_wav_chunk_written_before_the_upgrade_is_still_read(tmp_path: Path) -> None:
    pcm = tone(1.5)
    path = write_wav(tmp_path / "00000.wav", pcm)

    assert np.array_equal(read_audio(path), pcm.astype(np.float32) / 32768.0)
