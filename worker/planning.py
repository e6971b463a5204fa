"""Speech-aware chunk planning: where people speak, and which stretches go to the model together.

The decoded audio streams through faster-whisper's Silero VAD one block at a time (its recurrent
state carried across blocks, so the probabilities do not depend on the block size: one per 32 ms
frame), and an online planner turns them into windows:

- **Speech regions** with hysteresis: a frame at or above `ON` starts speech; speech ends at the
  first run of `MIN_SILENCE_FRAMES` frames below `OFF`.
- **Kept frames**: those within `PAD_FRAMES` (about 0.3 s) of a speech frame. A pause shorter than
  twice that stays in; longer silence or noise is dropped and never reaches the model.
- **Windows**: at most `max_seconds` (Whisper's own 30 s at most) of kept frames each, ending at the
  least speech-like moment in their last part: a dropped stretch if there is one, else the
  quietest frames (a short pause between words), the latest of the nearly-quietest so that windows
  come out full. A window is a list of spans on the original timeline; the model hears them back
  to back, and every time it gives is mapped back through the spans (`to_source_time`).

Every decision about a frame depends only on the audio up to a fixed distance past it, so the plan
is the same however the audio arrives (block sizes, a resumed `prepare`), and a window is handed
out as soon as it is final: a long file's first chunks become work while the rest still decodes.
"""

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from worker.audio import SAMPLE_RATE, Pcm, silence_near_end

FRAME = 512  # samples per VAD frame: 32 ms at 16 kHz
ON, OFF = 0.5, 0.35
MIN_SILENCE_FRAMES = 3  # about 100 ms below OFF ends a region
# Speech keeps about 0.3 s of what surrounds it (faster-whisper's batched pipeline keeps 0.4 s):
# a pause under 0.6 s stays whole, as the speaker made it; a longer one is cut down to 0.6 s.
PAD_FRAMES = 9
# A forced cut inside speech is searched in the last part of the allowed length, never sooner.
FORCED_CUT_SEARCH = 0.5
SMOOTH_FRAMES = 3
# Cut candidates this close to the quietest one count as equal: the latest wins.
CUT_TOLERANCE = 0.05
_VAD_CONTEXT = 64  # samples of the previous frame the Silero model sees with each frame
_VAD_BLOCK_FRAMES = 1000  # frames per model call: only memory, never the result, depends on it
_GATHER_SAMPLES = 250 * FRAME  # decoded audio (8 s) gathered before it is planned: fewer, larger calls


@dataclass(frozen=True)
class Window:
    """What one chunk gives the model: spans (sample offsets on the original timeline) in order."""

    index: int
    spans: tuple[tuple[int, int], ...]
    pcm: Pcm = field(repr=False, compare=False)

    @property
    def start(self) -> float:
        return self.spans[0][0] / SAMPLE_RATE

    @property
    def end(self) -> float:
        return self.spans[-1][1] / SAMPLE_RATE

    @property
    def span_seconds(self) -> list[list[float]]:
        return [[a / SAMPLE_RATE, b / SAMPLE_RATE] for a, b in self.spans]


class SpeechProbabilities:
    """Silero VAD over a stream of int16 blocks: yields one speech probability per 512 samples."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_VAD_CONTEXT, dtype=np.float32)
        self._rest = np.zeros(0, dtype=np.float32)

    def feed(self, pcm: Pcm) -> np.ndarray:
        audio = np.concatenate([self._rest, pcm.astype(np.float32) / 32768.0])
        whole = len(audio) // FRAME * FRAME
        self._rest = audio[whole:]
        return self._run(audio[:whole])

    def finish(self) -> np.ndarray:
        """The last partial frame, padded with silence (as the model's own reference code does)."""
        if not len(self._rest):
            return np.zeros(0, dtype=np.float32)
        tail = np.zeros(FRAME, dtype=np.float32)
        tail[: len(self._rest)] = self._rest
        self._rest = np.zeros(0, dtype=np.float32)
        return self._run(tail)

    def _run(self, audio: np.ndarray) -> np.ndarray:
        outputs = []
        for begin in range(0, len(audio), _VAD_BLOCK_FRAMES * FRAME):
            frames = audio[begin : begin + _VAD_BLOCK_FRAMES * FRAME].reshape(-1, FRAME)
            context = np.concatenate([self._context[None, :], frames[:-1, -_VAD_CONTEXT:]])
            batch = np.concatenate([context, frames], axis=1)
            out, self._h, self._c = self._session.run(None, {"input": batch, "h": self._h, "c": self._c})
            self._context = frames[-1, -_VAD_CONTEXT:].copy()
            outputs.append(np.asarray(out, dtype=np.float32).reshape(-1))
        return np.concatenate(outputs) if outputs else np.zeros(0, dtype=np.float32)


class _Samples:
    """The decoded PCM still needed by a window not yet handed out, by absolute sample offset."""

    def __init__(self) -> None:
        self._blocks: list[tuple[int, Pcm]] = []
        self.end = 0

    def append(self, pcm: Pcm) -> None:
        if len(pcm):
            self._blocks.append((self.end, pcm))
            self.end += len(pcm)

    def take(self, start: int, stop: int) -> Pcm:
        parts = [
            block[max(start - at, 0) : stop - at]
            for at, block in self._blocks
            if at < stop and at + len(block) > start
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def forget_before(self, position: int) -> None:
        """Drop samples before `position`; of a block that straddles it, only the rest is kept (a
        copy, so that the whole block's memory goes)."""
        self._blocks = [
            (at, b) if at >= position else (position, b[position - at :].copy())
            for at, b in self._blocks
            if at + len(b) > position
        ]


class Planner:
    """The online planner. `push` speech probabilities (one per frame) and the frames' samples;
    finished windows collect in `windows` as lists of (start, end) sample spans with their samples.

    Three stages, each deciding a frame once it has seen a fixed number of frames past it:
    speech regions (hysteresis, `MIN_SILENCE_FRAMES` to end one), kept frames (within `PAD_FRAMES`
    of a speech frame), and windows (`max_frames` kept frames at most, cut at the best moment).
    """

    def __init__(self, max_seconds: float) -> None:
        self.max_frames = max(SMOOTH_FRAMES + 2, round(max_seconds * SAMPLE_RATE) // FRAME)
        self.windows: list[list[tuple[int, int, Pcm]]] = []
        self._frames = 0  # frames pushed
        self._speaking = False
        self._run: list[int] = []  # frames below OFF while speaking: region or not, undecided yet
        self._decided = 0  # frames whose region status is known
        self._speech: deque[int] = deque()  # speech frames from `_kept_until - PAD_FRAMES` on
        self._kept_until = 0  # frames before this have been decided kept or dropped
        self._probs: deque[float] = deque()  # of frames from `_kept_until` on
        self._pending: list[tuple[int, float, bool, Pcm]] = []  # kept: frame, prob, gap before, pcm
        self._previous_kept = -2

    def push(self, probs: np.ndarray, samples: "_Samples") -> None:
        for p in probs.tolist():
            frame = self._frames
            self._frames += 1
            self._probs.append(p)
            self._classify(frame, p)
            self._keep(samples, final=False)

    def end(self, samples: "_Samples") -> None:
        for frame in self._run:
            self._region(frame, speech=False)
        self._run = []
        self._keep(samples, final=True)
        while self._pending:
            self._cut(final=True)

    @property
    def needed_from(self) -> int:
        """The earliest sample a window may still need."""
        return self._kept_until * FRAME

    def _classify(self, frame: int, p: float) -> None:
        if self._speaking and p < OFF:
            self._run.append(frame)
            if len(self._run) >= MIN_SILENCE_FRAMES:
                for f in self._run:
                    self._region(f, speech=False)
                self._speaking, self._run = False, []
            return
        if p >= ON:
            self._speaking = True
        # A short dip below OFF did not end the region: its frames were speech after all.
        for f in self._run:
            self._region(f, speech=True)
        self._run = []
        self._region(frame, speech=self._speaking)

    def _region(self, frame: int, *, speech: bool) -> None:
        self._decided = frame + 1
        if speech:
            self._speech.append(frame)

    def _keep(self, samples: "_Samples", *, final: bool) -> None:
        """Decide frames kept or dropped once the region status PAD_FRAMES past them is known."""
        limit = self._frames if final else self._decided - PAD_FRAMES
        while self._kept_until < limit:
            frame = self._kept_until
            while self._speech and self._speech[0] < frame - PAD_FRAMES:
                self._speech.popleft()
            kept = bool(self._speech) and self._speech[0] <= frame + PAD_FRAMES
            self._decide(frame, kept, samples)
            self._kept_until += 1

    def _decide(self, frame: int, kept: bool, samples: "_Samples") -> None:
        prob = self._probs.popleft()
        if not kept:
            return
        start = frame * FRAME
        pcm = samples.take(start, start + FRAME)
        self._pending.append((frame, prob, frame != self._previous_kept + 1 and bool(self._pending), pcm))
        self._previous_kept = frame
        if len(self._pending) >= self.max_frames + SMOOTH_FRAMES:
            self._cut(final=False)

    def _cut(self, *, final: bool) -> None:
        """Hand out the next window: up to `max_frames` kept frames, ending at a gap if one is in the
        last part, else at the least speech-like moment there."""
        pending = self._pending
        if final and len(pending) <= self.max_frames:
            cut = len(pending)
        else:
            low = max(1, round(FORCED_CUT_SEARCH * self.max_frames))
            cut = _best_cut(pending, low, self.max_frames)
        window, self._pending = pending[:cut], pending[cut:]
        self.windows.append(_spans(window))


def _best_cut(pending: list[tuple[int, float, bool, Pcm]], low: int, high: int) -> int:
    """Where to end a window, between `low` and `high` kept frames: at a stretch that was dropped
    (nobody speaks there) or in a pause pydub hears (down to 150 ms), whichever is latest, so that
    windows come out full; where nobody pauses, at the least speech-like moment, the latest of the
    nearly-quietest."""
    high = min(high, len(pending) - 1)
    if high <= low:
        return max(1, min(high, len(pending)))
    gaps = [i for i in range(low, high + 1) if pending[i][2]]
    pause = silence_near_end(np.concatenate([pcm for *_, pcm in pending[low:high]]))
    candidates = gaps[-1:] + ([low + round(pause / FRAME)] if pause is not None else [])
    if candidates:
        return max(candidates)
    scores = [sum(pending[j][1] for j in range(i - 1, i + 2)) / 3 for i in range(low, high)]
    best = min(scores) + CUT_TOLERANCE
    return low + max(i for i, score in enumerate(scores) if score <= best)


def _spans(frames: list[tuple[int, float, bool, Pcm]]) -> list[tuple[int, int, Pcm]]:
    """Consecutive kept frames as (start, end, samples) runs on the original timeline."""
    runs: list[tuple[int, int, Pcm]] = []
    start = previous = frames[0][0]
    blocks = [frames[0][3]]
    for frame, _, _, pcm in frames[1:]:
        if frame != previous + 1:
            runs.append(_run(start, blocks))
            start, blocks = frame, []
        blocks.append(pcm)
        previous = frame
    runs.append(_run(start, blocks))
    return runs


def _run(start_frame: int, blocks: list[Pcm]) -> tuple[int, int, Pcm]:
    pcm = np.concatenate(blocks)
    return start_frame * FRAME, start_frame * FRAME + len(pcm), pcm


def plan_windows(blocks: Iterable[Pcm], max_seconds: float) -> Iterator[Window]:
    """Windows of speech from a stream of 16 kHz mono int16 blocks, in order, each as soon as it is
    final. A stream without speech yields nothing.

    Memory stays bounded: kept frames are copied out as they are decided (at most a window's worth
    waits), and decoded audio is kept only from the first frame not decided yet.
    """
    vad, planner, samples = SpeechProbabilities(), Planner(max_seconds), _Samples()
    index = 0
    for block in _gathered(blocks, _GATHER_SAMPLES):
        samples.append(block)
        planner.push(vad.feed(block), samples)
        yield from _hand_out(planner, index)
        index += len(planner.windows)
        planner.windows.clear()
        samples.forget_before(planner.needed_from)
    planner.push(vad.finish(), samples)
    planner.end(samples)
    yield from _hand_out(planner, index)


def _gathered(blocks: Iterable[Pcm], samples: int) -> Iterator[Pcm]:
    """The stream in blocks of at least `samples` (the last may be shorter): a decoder gives a few
    milliseconds at a time, and every VAD call and every stored block has a fixed cost."""
    waiting: list[Pcm] = []
    size = 0
    for block in blocks:
        waiting.append(block)
        size += len(block)
        if size >= samples:
            yield np.concatenate(waiting)
            waiting, size = [], 0
    if waiting:
        yield np.concatenate(waiting)


def _hand_out(planner: Planner, first: int) -> Iterator[Window]:
    for offset, runs in enumerate(planner.windows):
        spans = tuple((a, b) for a, b, _ in runs)
        yield Window(first + offset, spans, np.concatenate([pcm for *_, pcm in runs]))


def to_source_time(spans: list[list[float]], t: float, *, is_end: bool) -> float:
    """A time the model gave (seconds into the window's audio) on the original timeline.

    At a join between two spans, a start belongs to the later span and an end to the earlier one.
    Times past the audio (Whisper may say 30.0 for a shorter window) stay at the last span's end.
    """
    offset = 0.0
    for start, end in spans:
        length = end - start
        inside = t < offset + length if not is_end else t <= offset + length
        if inside:
            return start + max(0.0, t - offset)
        offset += length
    return spans[-1][1]
