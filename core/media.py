"""Cheap validation of an uploaded media file that is already on local disk.

Everything goes through PyAV's bundled FFmpeg: there is no system ffmpeg to shell out to.
`probe` only reads the container header and the first ~0.5 s of audio, so it stays fast
(a few milliseconds) and never reads a whole upload; given a seekable file object (storage's
ranged reader) it reads just those bytes, plus what the container's index needs.
"""

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import av.error
import av.logging
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.container import InputContainer

# FFmpeg opens a surprising range of junk (a renamed ELF binary "is" MPEG audio) and only
# fails once a packet reaches the decoder, so probing must really decode this much audio.
PROBE_DECODE_SECONDS = 0.5


def _forward_ffmpeg_errors() -> None:
    """Make PyAV pass FFmpeg's errors (only those: FFmpeg is chatty) to our log captures.

    probe() captures them instead of printing them: some decoders only log a corrupt packet,
    and the log explains a rejection. PyAV's default level (None) forwards nothing at all.
    """
    if av.logging.get_level() is None:
        av.logging.set_level(av.logging.ERROR)


_forward_ffmpeg_errors()

# Everything that reading an arbitrary upload can raise: all PyAV errors derive from
# FFmpegError; PyAV also raises plain ValueError/RuntimeError for some malformed input.
_READ_ERRORS = (av.error.FFmpegError, OSError, ValueError, RuntimeError, EOFError)


class NotAudioError(Exception):
    """The upload cannot be used as audio; the message is meant for the end user."""


class EmptyAudioError(NotAudioError):
    """The container is valid but holds no audio samples."""


@dataclass(frozen=True)
class MediaInfo:
    container: str  # FFmpeg demuxer name, e.g. 'flac', 'ogg', 'mov,mp4,m4a,3gp,3g2,mj2'
    codec: str
    duration_seconds: float | None  # from container/stream metadata, None if unknown
    sample_rate: int
    channels: int


def probe(source: Path | BinaryIO) -> MediaInfo:
    """Check that `source` (a path, or a seekable binary file whose `name` ends in the file's
    extension) holds decodable audio and describe it; raise NotAudioError if not."""
    _forward_ffmpeg_errors()  # in case something reset PyAV's log level since import
    try:
        # FFmpeg picks a demuxer by extension and "opens" an empty x.flac without complaint.
        if _length(source) == 0:
            raise NotAudioError("file is empty")
        opened = str(source) if isinstance(source, Path) else source
        with av.logging.Capture() as logs, av.open(opened, mode="r", metadata_errors="replace") as container:
            return _inspect(container, logs)
    except NotAudioError:
        raise
    except _READ_ERRORS as exc:
        raise NotAudioError(_describe_failure(exc)) from exc


def _length(source: Path | BinaryIO) -> int:
    if isinstance(source, Path):
        return source.stat().st_size
    length = source.seek(0, io.SEEK_END)
    source.seek(0)
    return length


def _inspect(container: InputContainer, logs: list[tuple[int, str, str]]) -> MediaInfo:
    stream = _audio_stream(container)
    if stream is None:
        raise NotAudioError("file has no audio track")
    first = _decode_head(container, stream, logs)
    return MediaInfo(
        container=container.format.name,
        codec=stream.codec_context.name,
        duration_seconds=_duration_seconds(container, stream),
        # The decoded frame is the truth: container headers can disagree (e.g. HE-AAC).
        sample_rate=first.sample_rate,
        channels=first.layout.nb_channels,
    )


def _audio_stream(container: InputContainer) -> AudioStream | None:
    # The same choice as the worker: FFmpeg's "best" (default) audio stream.
    best = container.streams.best("audio")
    return best if isinstance(best, AudioStream) else None


def _decode_head(
    container: InputContainer, stream: AudioStream, logs: list[tuple[int, str, str]]
) -> AudioFrame:
    """Decode about PROBE_DECODE_SECONDS of audio and return the first non-empty frame."""
    # Errors logged while opening are not counted: only the decoder's verdict matters.
    opening_logs = len(logs)
    first: AudioFrame | None = None
    decoded = 0.0
    for frame in container.decode(stream):
        first = first or (frame if frame.samples else None)
        decoded += frame.samples / (frame.sample_rate or 1)
        if decoded >= PROBE_DECODE_SECONDS or _errors(logs[opening_logs:]):
            break
    # Some decoders report a corrupt packet only as a logged error and then skip it.
    if errors := _errors(logs[opening_logs:]):
        raise NotAudioError(f"file is not a decodable audio or video file ({errors[0]})")
    if first is None:
        raise EmptyAudioError("file contains no audio samples")
    return first


def _duration_seconds(container: InputContainer, stream: AudioStream) -> float | None:
    # Prefer the stream's own duration; the container's may include video or be estimated.
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / av.time_base
    else:
        return None
    return seconds if seconds > 0 else None


def _describe_failure(exc: BaseException) -> str:
    # Never show exception class names or server paths to the user, only FFmpeg's reason.
    if isinstance(exc, OSError):
        return f"file could not be read ({exc.strerror or 'I/O error'})"
    reason = exc.strerror if isinstance(exc, av.error.FFmpegError) else None
    return f"file is not a decodable audio or video file ({reason or 'unrecognised data'})"


def _errors(logs: list[tuple[int, str, str]]) -> list[str]:
    # Someone may have raised PyAV's log level for debugging: warnings are not failures.
    return [f"{source}: {message.strip()}" for level, source, message in logs if level <= av.logging.ERROR]
