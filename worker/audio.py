"""Audio for transcription: streaming decode, pauses, and the chunk files.

The file is decoded frame by frame with PyAV (bundled FFmpeg, no system ffmpeg) and resampled
to 16 kHz mono 16-bit, the format Whisper models expect, one block at a time, so memory stays flat
however long the recording is (`decode_pcm`; `worker.planning` decides what becomes a chunk).
pydub's silence detection finds the pause to cut at where speech runs on past a window
(`silence_near_end`). Chunks are stored as FLAC: lossless, at about half the size of PCM.
"""

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import av.error
import av.logging
import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer

with warnings.catch_warnings():
    # pydub warns at import that it cannot find ffmpeg; we only hand it in-memory PCM,
    # which never needs ffmpeg.
    warnings.simplefilter("ignore")
    from pydub import AudioSegment
    from pydub.silence import detect_silence

SAMPLE_RATE = 16_000

# (minimum silence in ms, dB below the window's loudness), tried in order: a long clear pause
# is the safest cut, shorter or louder "silences" are better than cutting blind.
SILENCE_ATTEMPTS: tuple[tuple[int, float], ...] = ((300, 25.0), (300, 16.0), (200, 16.0), (150, 12.0))
# Loudness assumed for an all-zero window, whose dBFS is -inf.
_FLOOR_DBFS = -90.0
# pydub's default 1 ms seek step is needlessly slow; 10 ms is finer than any pause we want.
_SEEK_STEP_MS = 10

# Everything decoding arbitrary user data can raise: all PyAV errors derive from
# FFmpegError; PyAV also raises plain ValueError/RuntimeError for some malformed input.
_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, RuntimeError, EOFError)


def _forward_ffmpeg_errors() -> None:
    """Make PyAV pass FFmpeg's errors (only those: FFmpeg is chatty) to our log captures.

    Some decoders merely log a corrupt packet and skip it, which would silently drop audio;
    with PyAV's default level (None) nothing at all would reach a capture.
    """
    if av.logging.get_level() is None:
        av.logging.set_level(av.logging.ERROR)


_forward_ffmpeg_errors()

Pcm = npt.NDArray[np.int16]


class AudioDecodeError(Exception):
    """The audio cannot be decoded; the message is meant for the end user."""


# --- decoding -------------------------------------------------------------------------------


def decode_pcm(path: Path) -> Iterator[Pcm]:
    """Yield the file's audio as 16 kHz mono int16 blocks, one decoded frame at a time."""
    _forward_ffmpeg_errors()  # in case something reset PyAV's log level since import
    decoded = 0  # output samples so far: the position reported in errors
    with _open_input(path) as container:
        frames = container.decode(_audio_stream(container))
        resampler = _Resampler()
        while True:
            frame = _next_frame(frames, decoded)
            # At the end, frame is None: that flushes what the resampler still holds back.
            for pcm in _resample(resampler, frame, decoded):
                decoded += len(pcm)
                yield pcm
            if frame is None:
                break
    if decoded == 0:
        raise AudioDecodeError("no audio could be decoded from the file")


def _open_input(path: Path) -> InputContainer:
    try:
        # Captured only to keep FFmpeg's complaint about a non-media file out of the logs:
        # the exception already says what is wrong.
        with av.logging.Capture():
            return av.open(str(path), metadata_errors="replace")
    except OSError:
        raise  # missing or unreadable file: an infrastructure problem, not bad audio
    except _DECODE_ERRORS as exc:
        raise AudioDecodeError(f"file is not a decodable audio file: {_reason(exc)}") from exc


def _audio_stream(container: InputContainer) -> AudioStream:
    # FFmpeg's "best" audio stream is the one a player would pick (and the one probe checks).
    best = container.streams.best("audio")
    if not isinstance(best, AudioStream):
        raise AudioDecodeError("file has no audio track")
    return best


def _next_frame(frames: Iterator[AudioFrame], decoded: int) -> AudioFrame | None:
    with _decoding_at(decoded):
        return next(frames, None)


class _Resampler:
    """AudioResampler to 16 kHz mono s16 that survives a mid-stream change of input format.

    PyAV's resampler refuses frames unlike the first one, but chained Ogg/MP3 streams can
    switch sample rate or channel layout; the output timeline just continues.
    """

    def __init__(self) -> None:
        self._resampler: AudioResampler | None = None
        self._input: tuple[int, str, str] | None = None

    def convert(self, frame: AudioFrame | None) -> list[AudioFrame]:
        if frame is None:
            return self._flush()
        converted: list[AudioFrame] = []
        signature = (frame.sample_rate, frame.layout.name, frame.format.name)
        resampler = self._resampler
        if resampler is None or signature != self._input:
            converted = self._flush()
            resampler = self._resampler = AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            self._input = signature
        return converted + resampler.resample(frame)

    def _flush(self) -> list[AudioFrame]:
        return self._resampler.resample(None) if self._resampler is not None else []


def _resample(resampler: _Resampler, frame: AudioFrame | None, decoded: int) -> list[Pcm]:
    with _decoding_at(decoded):
        converted = resampler.convert(frame)
    # Packed s16 mono comes out as shape (1, samples).
    return [out.to_ndarray().astype(np.int16, copy=False).reshape(-1) for out in converted if out.samples]


@contextmanager
def _decoding_at(samples: int) -> Iterator[None]:
    """Turn FFmpeg failures, raised or only logged, into AudioDecodeError at this position."""
    # The capture is opened per step, never across a yield, so that the caller's own PyAV use
    # between chunks (or its log captures) cannot mix with ours.
    try:
        with av.logging.Capture() as logs:
            yield
    except _DECODE_ERRORS as exc:
        raise AudioDecodeError(_failure_at(samples, _reason(exc))) from exc
    # Someone may have raised PyAV's log level for debugging: warnings are not failures.
    errors = [(source, message) for level, source, message in logs if level <= av.logging.ERROR]
    if errors:
        source, message = errors[0]
        raise AudioDecodeError(_failure_at(samples, f"corrupt data ({source}: {message.strip()})"))


def _failure_at(samples: int, reason: str) -> str:
    return f"audio could not be decoded at {samples / SAMPLE_RATE:.1f} s: {reason}"


def _reason(exc: BaseException) -> str:
    # FFmpeg's own wording, without exception class names or server paths.
    if isinstance(exc, av.error.FFmpegError | OSError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or "unknown error"


# --- pauses -------------------------------------------------------------------------------


def silence_near_end(window: Pcm) -> int | None:
    """Middle of the pause nearest to the window's end (samples from its start), if there is one:
    first a long clear pause, then shorter or louder ones, down to 150 ms (`SILENCE_ATTEMPTS`)."""
    if not len(window):
        return None
    segment = AudioSegment(window.tobytes(), sample_width=2, frame_rate=SAMPLE_RATE, channels=1)
    # Relative threshold: what counts as silence depends on recording level and noise floor.
    loudness = max(float(segment.dBFS), _FLOOR_DBFS)
    for min_ms, below_db in SILENCE_ATTEMPTS:
        silences: list[list[int]] = detect_silence(
            segment, min_silence_len=min_ms, silence_thresh=loudness - below_db, seek_step=_SEEK_STEP_MS
        )
        if silences:
            return _nearest_middle(silences, len(window))
    return None


def _nearest_middle(silences: list[list[int]], target: int) -> int:
    # pydub reports [start_ms, end_ms] pairs; convert each middle to samples.
    middles = [(begin + end) * SAMPLE_RATE // 2000 for begin, end in silences]
    return min(middles, key=lambda middle: abs(target - middle))


def encode_flac(pcm: Pcm) -> bytes:
    """16 kHz mono int16 samples as FLAC: lossless, so the model hears exactly what was planned, at
    about half the bytes of a WAV."""
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        frame = AudioFrame.from_ndarray(pcm.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts, frame.time_base = 0, Fraction(1, SAMPLE_RATE)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return out.getvalue()


def read_audio(path: Path) -> npt.NDArray[np.float32]:
    """A chunk written by `prepare` (FLAC or WAV, 16 kHz mono s16) as the model's float32 input."""
    with av.open(str(path)) as container:
        pcm = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
    return model_input(np.concatenate(pcm) if pcm else np.zeros(0, dtype=np.int16))


def model_input(pcm: Pcm) -> npt.NDArray[np.float32]:
    """16 kHz mono int16 samples as the float32 (-1 to 1) a model takes."""
    return pcm.astype(np.float32) / 32768.0
