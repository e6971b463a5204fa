"""Streaming decode of an uploaded file into WAV chunks for transcription.

The file is decoded frame by frame with PyAV (bundled FFmpeg, no system ffmpeg) and resampled
to 16 kHz mono 16-bit, the format Whisper models expect. PCM is buffered only until the next
cut is chosen, so memory stays flat however long the recording is: about one chunk plus the
one-second tail that guarantees the last chunk is not a useless sliver.

Cuts are placed in silence so that no word is split between two chunks: the cut is searched
in the last 30 % of each chunk, first with pydub's silence detection, then, for audio without
any pause (music, noise, a test tone), at the quietest 100 ms.
"""

import io
import warnings
import wave
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

# The cut is searched in [WINDOW_START * target, target] seconds from the chunk start.
WINDOW_START = 0.7
# Remainders shorter than this are not worth a chunk of their own: the previous cut moves
# earlier instead, so every chunk still respects the target.
MIN_TAIL_SECONDS = 1.0
_TAIL = round(MIN_TAIL_SECONDS * SAMPLE_RATE)
# (minimum silence in ms, dB below the window's loudness), tried in order: a long clear pause
# is the safest cut, shorter or louder "silences" are better than cutting blind.
SILENCE_ATTEMPTS: tuple[tuple[int, float], ...] = ((300, 25.0), (300, 16.0), (200, 16.0), (150, 12.0))
# Loudness assumed for an all-zero window, whose dBFS is -inf.
_FLOOR_DBFS = -90.0
# pydub's default 1 ms seek step is needlessly slow; 10 ms is finer than any pause we want.
_SEEK_STEP_MS = 10
_HOP = SAMPLE_RATE // 100  # 10 ms energy resolution for the no-silence fallback
_QUIET_HOPS = 10  # the fallback looks for the quietest 100 ms

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


@dataclass(frozen=True)
class AudioChunk:
    index: int  # 0-based
    start: float  # seconds on the whole file's timeline
    end: float
    wav: bytes  # 16 kHz mono 16-bit PCM WAV of exactly [start, end)


def iter_chunks(path: Path, target_seconds: float) -> Iterator[AudioChunk]:
    """Decode `path` and yield consecutive chunks of at most `target_seconds`, cut in silence.

    Chunks tile the decoded timeline exactly (no gap, no overlap). Raises AudioDecodeError
    (possibly after some chunks were yielded) if the audio is corrupt, and lets OSError through
    if the file itself cannot be opened.
    """
    # Checked here, not inside the generator, so a bad argument fails at the call site.
    if target_seconds < MIN_TAIL_SECONDS:
        raise ValueError(f"target_seconds must be at least {MIN_TAIL_SECONDS}, got {target_seconds}")
    return _chunks(path, round(target_seconds * SAMPLE_RATE))


def _chunks(path: Path, target: int) -> Iterator[AudioChunk]:
    for index, (start, pcm) in enumerate(_split(_decode_pcm(path), target)):
        yield AudioChunk(
            index=index,
            start=start / SAMPLE_RATE,
            end=(start + len(pcm)) / SAMPLE_RATE,
            wav=_wav_bytes(pcm),
        )


# --- decoding -------------------------------------------------------------------------------


def _decode_pcm(path: Path) -> Iterator[Pcm]:
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


# --- chunk planning -------------------------------------------------------------------------


class _PcmBuffer:
    """PCM collected since the current chunk start, kept as blocks to avoid re-copying."""

    def __init__(self) -> None:
        self._blocks: list[Pcm] = []
        self._length = 0

    def __len__(self) -> int:
        return self._length

    def append(self, block: Pcm) -> None:
        self._blocks.append(block)
        self._length += len(block)

    def take(self) -> Pcm:
        """Return everything buffered as one array and empty the buffer."""
        pcm = np.concatenate(self._blocks) if self._blocks else np.zeros(0, dtype=np.int16)
        self._blocks, self._length = [], 0
        return pcm


def _split(blocks: Iterable[Pcm], target: int) -> Iterator[tuple[int, Pcm]]:
    """Yield (start sample, pcm) chunks of at most `target` samples that tile the stream."""
    buffer = _PcmBuffer()
    start = 0
    for block in blocks:
        buffer.append(block)
        # Waiting for `tail` extra samples guarantees that whatever follows a cut is long
        # enough to be a chunk of its own, without holding back a whole chunk.
        while len(buffer) >= target + _TAIL:
            start = yield from _emit_cut(buffer, start, target)
    while len(buffer) > target:
        start = yield from _emit_cut(buffer, start, target)
    if len(buffer):
        yield start, buffer.take()


def _emit_cut(buffer: _PcmBuffer, start: int, target: int) -> Generator[tuple[int, Pcm], None, int]:
    """Cut the buffer once, yield the chunk, keep the remainder; return the new chunk start."""
    pcm = buffer.take()
    cut = _choose_cut(pcm, target)
    yield start, pcm[:cut]
    # Copy so the emitted chunk's array is not kept alive by the remainder's view.
    buffer.append(pcm[cut:].copy())
    return start + cut


def _choose_cut(pcm: Pcm, target: int) -> int:
    """Pick where to cut `pcm` (samples from the chunk start), preferring silence."""
    low, high = _search_window(len(pcm), target)
    window = pcm[low:high]
    offset = _silence_offset(window)
    return low + (offset if offset is not None else _quietest_offset(window))


def _search_window(available: int, target: int) -> tuple[int, int]:
    low = max(1, round(WINDOW_START * target))
    # Near the end of the stream, leave at least MIN_TAIL_SECONDS for the last chunk.
    high = max(low, min(target, available - _TAIL))
    return low, high


def _silence_offset(window: Pcm) -> int | None:
    """Middle of the silence nearest to the window's end (the target), if there is one."""
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


def _quietest_offset(window: Pcm) -> int:
    """Centre of the quietest 100 ms in the window: the least damaging cut without silence."""
    hops = len(window) // _HOP
    if hops < _QUIET_HOPS:
        return len(window)
    energy = np.square(window[: hops * _HOP].astype(np.float64)).reshape(hops, _HOP).sum(axis=1)
    spans = np.convolve(energy, np.ones(_QUIET_HOPS), mode="valid")
    # Reversed argmin: among equally quiet spans prefer the latest, closest to the target.
    first = len(spans) - 1 - int(np.argmin(spans[::-1]))
    return first * _HOP + _QUIET_HOPS * _HOP // 2


def _wav_bytes(pcm: Pcm) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.astype("<i2").tobytes())
    return out.getvalue()
