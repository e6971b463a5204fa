"""AssemblyAI's hosted API through the official SDK: upload the chunk, create a transcript, poll it.

`submit` uploads and creates (the billed request) and returns the transcript id; `collect` polls a
transcript by id until it ends, so the pipeline can store the id in between and a retry never pays
for the same chunk twice. `speakers=True` turns on AssemblyAI's speaker labels: every word and
segment then carries the provider's letter ("A", "B", …), and a segment never spans two speakers.

Each instance has its own SDK client (key, base URL, timeouts), so nothing is set on the SDK's
global `aai.settings` and tests can point an instance at a fake server on loopback.

Errors are split the way the pipeline retries: a rejected key or a request the API refuses (4xx
other than 408/429) and a transcript that ends `status=error` (audio the provider cannot decode)
raise `PermanentTranscriptionError`; HTTP 5xx, 408, 429, timeouts and connection errors propagate
as they are, so RQ retries the chunk with backoff.
"""

from pathlib import Path

import assemblyai as aai

from core.logging import get_logger
from worker.backends.base import (
    ChunkTranscript,
    PermanentTranscriptionError,
    ProviderTranscriptGone,
    Segment,
    Word,
)

log = get_logger(__name__)

# A segment ends at sentence punctuation, a change of speaker, a pause this long, or when it grows
# this long.
PAUSE_SECONDS = 1.0
MAX_SEGMENT_SECONDS = 30.0
_SENTENCE_END = (".", "?", "!")
_RETRYABLE_4XX = (408, 429)


class AssemblyAI:
    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.assemblyai.com",
        poll_interval: float = 3.0,
        timeout: float | None = None,
        http_timeout: float = 30.0,
    ) -> None:
        """`timeout` bounds the wait for one transcript (None: until it ends); `http_timeout` each request."""
        settings = aai.Settings(
            api_key=api_key, base_url=base_url, http_timeout=http_timeout, polling_interval=poll_interval
        )
        self._client = aai.Client(settings=settings)
        self._timeout = timeout

    def transcribe(self, audio: Path, language: str | None, *, speakers: bool = False) -> ChunkTranscript:
        return self.collect(self.submit(audio, language, speakers=speakers))

    def submit(self, audio: Path, language: str | None, *, speakers: bool = False) -> str:
        config = aai.TranscriptionConfig(
            language_code=language,
            language_detection=True if language is None else None,
            speaker_labels=True if speakers else None,
        )
        transcriber = aai.Transcriber(client=self._client, config=config)
        try:
            transcript = transcriber.submit(str(audio))
        except aai.TranscriptError as exc:
            raise _classify(exc) from exc
        if not transcript.id:
            raise RuntimeError("AssemblyAI accepted the transcript without giving its id")
        log.info("assemblyai.submitted", transcript_id=transcript.id, speakers=speakers)
        return transcript.id

    def collect(self, transcript_id: str) -> ChunkTranscript:
        try:
            transcript = aai.Transcript(transcript_id, client=self._client).wait_for_completion(
                poll_timeout=self._timeout
            )
        except aai.TranscriptError as exc:
            if _is_unknown_transcript(exc):
                raise ProviderTranscriptGone(f"AssemblyAI has no transcript {transcript_id}: {exc}") from exc
            raise _classify(exc) from exc
        if transcript.status == aai.TranscriptStatus.error:
            raise PermanentTranscriptionError(
                f"AssemblyAI could not transcribe the audio: {transcript.error}"
            )
        words = [
            Word(start=w.start / 1000, end=w.end / 1000, text=w.text, speaker=w.speaker)
            for w in transcript.words or []
        ]
        # The response names the language asked for, or the one detected.
        detected = (transcript.json_response or {}).get("language_code")
        log.info("assemblyai.transcribed", transcript_id=transcript_id, words=len(words))
        return ChunkTranscript(segments=group_words(words), language=detected)


def _is_unknown_transcript(exc: aai.TranscriptError) -> bool:
    # An id the API does not know comes back as a 404, or as a 400 saying "… not found".
    return exc.status_code == 404 or (exc.status_code == 400 and "not found" in str(exc).lower())


def _classify(exc: aai.TranscriptError) -> Exception:
    status = exc.status_code
    if status in (401, 403):
        return PermanentTranscriptionError(
            f"AssemblyAI rejected the API key (HTTP {status}: {exc}); check VERBATIM_ASSEMBLYAI_API_KEY"
        )
    if status is not None and 400 <= status < 500 and status not in _RETRYABLE_4XX:
        return PermanentTranscriptionError(f"AssemblyAI refused the request (HTTP {status}): {exc}")
    return exc  # 5xx, 408, 429, or the poll ran out of time: transient


def group_words(words: list[Word]) -> list[Segment]:
    """Cut the word stream into segments at sentence ends, speaker changes, pauses, or a length cap."""
    segments: list[Segment] = []
    current: list[Word] = []
    for word in words:
        if current and _breaks_before(current, word):
            segments.append(_segment(current))
            current = []
        current.append(word)
    if current:
        segments.append(_segment(current))
    return segments


def _breaks_before(current: list[Word], word: Word) -> bool:
    last = current[-1]
    return (
        last.text.endswith(_SENTENCE_END)
        or word.speaker != last.speaker
        or word.start - last.end >= PAUSE_SECONDS
        or word.end - current[0].start > MAX_SEGMENT_SECONDS
    )


def _segment(words: list[Word]) -> Segment:
    return Segment(
        start=words[0].start,
        end=words[-1].end,
        text=" ".join(w.text for w in words),
        words=list(words),
        speaker=words[0].speaker,
    )
