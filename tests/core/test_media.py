"""core.media.probe against real speech recordings and realistic non-audio uploads."""

import random
import shutil
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from core.media import EmptyAudioError, MediaInfo, NotAudioError, probe
from tests.conftest import SPEECH

JFK = SPEECH / "jfk" / "jfk.flac"
OPUS = SPEECH / "fleurs_en" / "fleurs-en-000.ogg"
WAV = SPEECH / "ljspeech" / "LJ001-0001.wav"
LONGFORM = SPEECH / "longform" / "ljspeech_LJ001-0001_to_0032_concat.wav"
MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"


def write_mp4(path: Path, *, video: bool, audio: bool, seconds: float = 2.0) -> Path:
    """An MP4 made with PyAV: mpeg4 video and/or AAC audio (a 440 Hz tone)."""
    with av.open(str(path), "w") as out:
        # Every stream must exist before the first packet is muxed (that writes the header).
        video_stream = out.add_stream("mpeg4", rate=25) if video else None
        audio_stream = out.add_stream("aac", rate=44_100, layout="mono") if audio else None
        if video_stream is not None:
            _mux_video(out, video_stream, seconds)
        if audio_stream is not None:
            _mux_audio(out, audio_stream, seconds)
    return path


def _mux_video(out, stream, seconds: float) -> None:
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(int(seconds * 25)):
        image = np.full((48, 64, 3), i * 4 % 255, dtype=np.uint8)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
    out.mux(stream.encode(None))


def _mux_audio(out, stream, seconds: float) -> None:
    rate = stream.rate
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for i in range(0, len(tone), 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, i : i + 1024], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, i
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def write_header_only_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
    return path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (JFK, MediaInfo("flac", "flac", 11.0, 44_100, 2)),
        # Opus always decodes at 48 kHz, whatever rate the encoder was fed.
        (OPUS, MediaInfo("ogg", "opus", 10.5665, 48_000, 1)),
        (WAV, MediaInfo("wav", "pcm_s16le", 9.655, 22_050, 1)),
    ],
    ids=["flac", "ogg-opus", "wav"],
)
def test_probe_describes_real_speech(path: Path, expected: MediaInfo) -> None:
    info = probe(path)

    assert (info.container, info.codec, info.sample_rate, info.channels) == (
        expected.container,
        expected.codec,
        expected.sample_rate,
        expected.channels,
    )
    assert info.duration_seconds == pytest.approx(expected.duration_seconds, abs=0.01)


@pytest.mark.parametrize(("name", "video"), [("clip.mp4", True), ("voice.m4a", False)])
def test_probe_accepts_mp4_with_an_audio_track(tmp_path: Path, name: str, video: bool) -> None:
    path = write_mp4(tmp_path / name, video=video, audio=True)

    info = probe(path)

    assert (info.container, info.codec, info.sample_rate, info.channels) == (MP4_FAMILY, "aac", 44_100, 1)
    assert info.duration_seconds == pytest.approx(2.0, abs=0.05)


def test_probe_rejects_video_without_audio(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "silent-film.mp4", video=True, audio=False)

    with pytest.raises(NotAudioError, match="no audio track"):
        probe(path)


def _text(path: Path) -> None:
    path.write_text("Dear team,\nplease transcribe the meeting.\n" * 50)


def _pdf(path: Path) -> None:
    body = b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n" * 20
    path.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + body + b"trailer\n<< /Root 1 0 R >>\n%%EOF\n")


def _elf(path: Path) -> None:
    # FFmpeg opens this as MPEG audio and only fails once a packet reaches the decoder.
    shutil.copyfile("/bin/ls", path)


def _random(path: Path) -> None:
    path.write_bytes(random.Random(1234).randbytes(200_000))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


NOT_DECODABLE = r"^file is not a decodable audio or video file \(.+\)$"


@pytest.mark.parametrize(
    ("name", "write", "expected"),
    [
        ("notes.wav", _text, NOT_DECODABLE),
        ("report.pdf", _pdf, NOT_DECODABLE),
        ("song.mp3", _elf, NOT_DECODABLE),
        ("blob.ogg", _random, NOT_DECODABLE),
        # FFmpeg "opens" an empty .flac (it trusts the extension) and finds no stream in it.
        ("x.flac", _empty, r"^file is empty$"),
    ],
    ids=["text", "pdf", "elf-renamed-mp3", "random-bytes", "zero-bytes"],
)
def test_probe_rejects_non_audio(tmp_path: Path, name: str, write, expected: str) -> None:
    path = tmp_path / name
    write(path)

    with pytest.raises(NotAudioError, match=expected) as caught:
        probe(path)

    assert type(caught.value) is NotAudioError  # not EmptyAudioError: this is not audio at all
    message = str(caught.value)
    # User-facing: no exception class names, no server paths.
    assert "Error" not in message
    assert str(tmp_path) not in message


def test_probe_reports_header_only_wav_as_empty(tmp_path: Path) -> None:
    path = write_header_only_wav(tmp_path / "empty.wav")

    with pytest.raises(EmptyAudioError, match="no audio samples"):
        probe(path)


def test_probe_reports_unreadable_file_readably(tmp_path: Path) -> None:
    with pytest.raises(NotAudioError, match=r"^file could not be read \(No such file or directory\)$"):
        probe(tmp_path / "missing.flac")


@pytest.mark.parametrize("path", [JFK, OPUS, LONGFORM], ids=["flac", "ogg-opus", "wav-231s"])
def test_probe_is_fast(path: Path) -> None:
    probe(path)  # warm-up: the first call pays for loading codecs
    started = time.perf_counter()
    for _ in range(5):
        probe(path)

    assert (time.perf_counter() - started) / 5 < 0.1
