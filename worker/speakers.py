"""Who speaks when, across the whole job: voice prints per chunk, clustered once at the merge.

A dialogue job's chunks are transcribed independently, so their voices are compared only at the
merge, where all of them are known:

- **Voice prints** (`voice_prints`, per chunk, beside its transcript): resemblyzer's speaker encoder
  (a 17 MB model inside its wheel; no download) embeds windows of `WINDOW_SECONDS`, every
  `HOP_SECONDS`, inside each stretch of speech the chunk heard (a window never straddles two
  stretches, which may lie far apart on the timeline), stored with their times on the job's timeline.
- **Local chunks** (`label_speakers`): every window of the job is clustered at once (agglomerative,
  cosine, then refined like k-means), to the number of speakers the job names, or one chosen within
  its bounds, or found from the audio; each word takes the speaker of the windows that cover it.
  One clustering for the job is what makes "A" the same person in every chunk.
- **AssemblyAI chunks**: the provider names speakers per request, "A" being whoever spoke first in
  that chunk. Each (chunk, letter) gets the print of its words' windows, and the letters are linked
  chunk by chunk to the job's speakers (the best one-to-one match above `LINK_SIMILARITY`), so one
  person keeps one letter across chunks.

Letters are given A, B, C, … in the order speakers first speak in the job.
"""

import functools
import string
import warnings
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.enums import Mode
from core.options import MAX_SPEAKERS, TranscriptionOptions
from repositories.models import Job
from worker.audio import SAMPLE_RATE

Vector = npt.NDArray[np.float32]
# One voice print: [start, end, [256 floats]], seconds on the job's timeline.
Voice = list[Any]

# The encoder was trained on 1.6 s of audio (160 frames of 10 ms); a window every 0.8 s.
WINDOW_SECONDS = 1.6
HOP_SECONDS = 0.8
# The encoder's input: mel frames of 10 ms, from audio at resemblyzer's loudness.
FRAMES_PER_SECOND = 100
VOLUME_DBFS = -30
# A stretch of speech shorter than this says too little about a voice to be embedded.
SHORTEST_SECONDS = 0.5
# Decimals kept of each of the 256 values (they are L2-normalised, about 0.06 each).
DECIMALS = 4
# Windows of one job clustered together at most; beyond, a regular sample is clustered and every
# window joins its nearest speaker (the pairwise distances grow with the square).
MAX_CLUSTERED = 2000
# Windows either side of a window that are heard with it: to find the voices, and to label it.
VOICE_CONTEXT = 2
LABEL_CONTEXT = 1
# Cosine similarity of a neighbour's window to a window, for the neighbour to count as its context.
# Measured on the shared recordings: one person's windows 0.8 s apart are above 0.68 (1.6 s apart,
# 0.55) but for one in twenty; two people's windows are below 0.57 but for one in twenty.
CONTEXT_SIMILARITY = 0.55
# Average-linkage cosine distance under which windows (in context) are one voice, when the job names
# no count. Measured on the shared recordings: one person's windows join below 0.19, two people's
# (two men reading for LibriVox, two women of FLEURS) above 0.29.
SAME_VOICE_DISTANCE = 0.24
# A cluster with fewer windows than this share of the job's, or than this many, is noise (a cough,
# two voices at once, a window across a change of speaker), not a speaker: its windows join their
# nearest speaker.
SMALLEST_SHARE = 0.02
SMALLEST_WINDOWS = 3
# How alike two provider letters' prints must be (cosine) to be taken for the same person.
LINK_SIMILARITY = 0.8


@dataclass(frozen=True)
class SpeakerCount:
    """How many people speak, as the job says: at least `low`, at most `high` (both: exactly)."""

    low: int = 1
    high: int = MAX_SPEAKERS

    @classmethod
    def of(cls, options: TranscriptionOptions) -> "SpeakerCount":
        if options.speakers is not None:
            return cls(options.speakers, options.speakers)
        low = options.min_speakers or 1
        return cls(low, max(low, options.max_speakers or MAX_SPEAKERS))


def speaker_count(job: Job) -> SpeakerCount | None:
    """A dialogue job's speaker count; None for a job whose speakers are not labelled."""
    if job.mode != Mode.DIALOGUE:
        return None
    return SpeakerCount.of(TranscriptionOptions.of(job.options))


# --- voice prints ---------------------------------------------------------------------------------


@functools.cache
def _resemblyzer() -> Any:
    """resemblyzer, imported on first use (a worker that labels no speakers never loads torch). Its
    imports warn of deprecations in its dependencies (scipy, setuptools) that are not ours to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import resemblyzer
    return resemblyzer


@functools.cache
def _encoder() -> Any:
    """resemblyzer's encoder, loaded once per process on the CPU (its weights ship in the wheel)."""
    return _resemblyzer().VoiceEncoder("cpu", verbose=False)


def voice_prints(audio: Vector, spans: list[list[float]], *, threads: int = 1) -> list[Voice]:
    """Voice prints of a chunk's audio (16 kHz float32, its spans back to back), on the job's
    timeline, in order. `threads`: CPU threads for the encoder (0: torch's default)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    windows = [w for start, end, offset in _stretches(spans) for w in _windows(audio, start, end, offset)]
    prints: list[Voice] = []
    for group in _by_length(windows).values():
        with torch.no_grad():
            vectors = _encoder()(torch.from_numpy(np.stack([mel for _, _, mel in group]))).numpy()
        prints += [[start, end, _rounded(v)] for (start, end, _), v in zip(group, vectors, strict=True)]
    return sorted(prints, key=lambda p: p[0])


def _stretches(spans: list[list[float]]) -> list[tuple[float, float, int]]:
    """Each span (start, end on the timeline) with the sample it begins at in the chunk's audio."""
    found, offset = [], 0
    for start, end in spans:
        found.append((start, end, offset))
        offset += round((end - start) * SAMPLE_RATE)
    return found


def _windows(audio: Vector, start: float, end: float, offset: int) -> list[tuple[float, float, Vector]]:
    """Windows (start, end on the timeline, mel frames) over one stretch: one every hop, the last
    ending with the stretch; a stretch shorter than a window is one window."""
    audio_tools = _resemblyzer().audio
    piece = audio[offset : offset + round((end - start) * SAMPLE_RATE)]
    if end - start < SHORTEST_SECONDS or not piece.any():  # digital silence has no voice, nor loudness
        return []
    mel = audio_tools.wav_to_mel_spectrogram(
        audio_tools.normalize_volume(piece, VOLUME_DBFS, increase_only=True)
    )
    size, hop = round(WINDOW_SECONDS * FRAMES_PER_SECOND), round(HOP_SECONDS * FRAMES_PER_SECOND)
    if len(mel) <= size:
        return [(round(start, 3), round(end, 3), mel)]
    firsts = sorted({*range(0, len(mel) - size, hop), len(mel) - size})
    return [
        (
            round(start + f / FRAMES_PER_SECOND, 3),
            round(min(start + (f + size) / FRAMES_PER_SECOND, end), 3),
            mel[f : f + size],
        )
        for f in firsts
    ]


def _by_length(windows: list[tuple[float, float, Vector]]) -> dict[int, list[tuple[float, float, Vector]]]:
    """Windows grouped by their number of frames: one encoder call for each."""
    groups: dict[int, list[tuple[float, float, Vector]]] = {}
    for window in windows:
        groups.setdefault(len(window[2]), []).append(window)
    return groups


def _rounded(vector: Vector) -> list[float]:
    return [round(float(x), DECIMALS) for x in vector]


# --- clustering -----------------------------------------------------------------------------------


def cluster(windows: Sequence[Voice], count: SpeakerCount) -> list[int]:
    """A speaker number (0, 1, …) for each voice print (in order of start).

    The voices are found from windows heard in a wide context (`VOICE_CONTEXT`): as many as they
    differ by (`SAME_VOICE_DISTANCE`), kept within the count's bounds (exactly that many, when they
    meet). Each window then goes to the nearest voice heard in a narrow one (`LABEL_CONTEXT`),
    which keeps a change of speaker where it is.
    """
    if not windows:
        return []
    vectors = _normalised(np.array([v[2] for v in windows], dtype=np.float32))
    starts, ends = [v[0] for v in windows], [v[1] for v in windows]
    wide, narrow = (_in_context(vectors, starts, ends, reach) for reach in (VOICE_CONTEXT, LABEL_CONTEXT))
    sample = np.arange(0, len(vectors), max(1, int(np.ceil(len(vectors) / MAX_CLUSTERED))))
    voices = _agglomerate(wide[sample], count)
    return [int(s) for s in _refine(narrow, _centroids(narrow[sample], voices))]


def _agglomerate(vectors: Vector, count: SpeakerCount) -> npt.NDArray[np.int_]:
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=int)
    tree = linkage(vectors, method="average", metric="cosine")
    wanted = count.high
    if count.low < count.high:
        found = len(_speakers_in(fcluster(tree, t=SAME_VOICE_DISTANCE, criterion="distance") - 1))
        wanted = min(max(found, count.low), count.high)
    # The tree cut into more and more clusters until `wanted` of them are large enough to be
    # speakers: a stray window must not take the place of a voice.
    for clusters in range(min(wanted, len(vectors)), len(vectors) + 1):
        labels = np.asarray(fcluster(tree, t=clusters, criterion="maxclust"), dtype=int) - 1
        if len(_speakers_in(labels)) >= wanted:
            break
    return _without_noise(vectors, labels)


def _speakers_in(labels: npt.NDArray[np.int_]) -> list[int]:
    """The clusters large enough to be a voice (`SMALLEST_SHARE`, and a few windows at least)."""
    sizes = np.bincount(labels)
    return [c for c in range(len(sizes)) if sizes[c] >= max(SMALLEST_WINDOWS, SMALLEST_SHARE * len(labels))]


def _without_noise(vectors: Vector, labels: npt.NDArray[np.int_]) -> npt.NDArray[np.int_]:
    """Clusters too small to be a speaker folded into their nearest large one."""
    large = _speakers_in(labels)
    if not large:
        return np.zeros(len(labels), dtype=int)
    centroids = _centroids(vectors, labels)[large]
    keep = np.isin(labels, large)
    nearest = np.array(large)[np.argmax(vectors @ centroids.T, axis=1)]
    return np.unique(np.where(keep, labels, nearest), return_inverse=True)[1]


def _centroids(vectors: Vector, labels: npt.NDArray[np.int_]) -> Vector:
    sums = np.stack([vectors[labels == c].sum(axis=0) for c in range(labels.max() + 1)])
    return _normalised(sums)


def _refine(vectors: Vector, centroids: Vector, rounds: int = 10) -> npt.NDArray[np.int_]:
    """Each vector to its nearest centroid, centroids recomputed, until nothing moves."""
    labels = np.argmax(vectors @ centroids.T, axis=1)
    for _ in range(rounds):
        present = np.unique(labels)
        centroids = _normalised(np.stack([vectors[labels == c].sum(axis=0) for c in present]))
        moved = present[np.argmax(vectors @ centroids.T, axis=1)]
        if np.array_equal(moved, labels):
            break
        labels = moved
    return np.unique(labels, return_inverse=True)[1]


def _normalised(vectors: Vector) -> Vector:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.where(norms == 0, 1, norms), dtype=np.float32)


# --- labelling words ------------------------------------------------------------------------------


def label_speakers(
    voices: Sequence[Sequence[Voice] | None],
    segments: Sequence[Sequence[dict[str, Any]]],
    count: SpeakerCount,
) -> list[list[str]]:
    """The job's speaker letter of every unit (`units`) of each chunk's segments, chunk by chunk.

    `segments` are each chunk's, on the job's timeline, in chunk order; `voices` each chunk's
    voice prints. Segments a provider labelled keep its split into speakers, with its letters linked
    across chunks; others are labelled from the job's clustered windows.
    """
    if any("speaker" in s for group in segments for s in group):
        found = _linked(voices, segments, count)
    else:
        found = _clustered(voices, segments, count)
    return _lettered(found)


def units(segments: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What carries a speaker: each word, or a segment without word timings as a whole."""
    return [w for s in segments for w in (s.get("words") or [s])]


def _lettered(speakers: list[list[int]]) -> list[list[str]]:
    """Speaker numbers as letters, A for whoever speaks first in the job, then B, …"""
    order: dict[int, str] = {}
    for group in speakers:
        for s in group:
            order.setdefault(s, _letter(len(order)))
    return [[order[s] for s in group] for group in speakers]


def _letter(i: int) -> str:
    """A … Z, then AA, AB, … (a job rarely has more than a few speakers)."""
    letters = string.ascii_uppercase
    return letters[i] if i < len(letters) else _letter(i // len(letters) - 1) + letters[i % len(letters)]


# --- local chunks: one clustering of the job's windows ---------------------------------------------


def _clustered(
    voices: Sequence[Sequence[Voice] | None],
    segments: Sequence[Sequence[dict[str, Any]]],
    count: SpeakerCount,
) -> list[list[int]]:
    windows = sorted((v for group in voices for v in group or []), key=lambda v: v[0])
    timed = _Timed([v[0] for v in windows], [v[1] for v in windows], cluster(windows, count))
    return [[timed.speaker_at(u["start"], u["end"]) for u in units(group)] for group in segments]


@dataclass(frozen=True)
class _Timed:
    """Windows on the timeline, in order of start, each with its speaker."""

    starts: list[float]
    ends: list[float]
    speakers: list[int]

    def speaker_at(self, start: float, end: float) -> int:
        """The speaker whose windows overlap [start, end] most; else that of the nearest window
        (0 when there is none: one voice)."""
        weights: dict[int, float] = {}
        for i in self.overlapping(start, end):
            overlap = min(end, self.ends[i]) - max(start, self.starts[i])
            weights[self.speakers[i]] = weights.get(self.speakers[i], 0.0) + max(overlap, 1e-3)
        if weights:
            return max(weights, key=lambda s: weights[s])
        if not self.starts:
            return 0
        # Windows are at most `WINDOW_SECONDS` long: the nearest middle starts close to `middle`.
        middle = (start + end) / 2
        at = bisect_left(self.starts, middle)
        near = range(max(0, at - 2), min(len(self.starts), at + 2))
        return self.speakers[min(near, key=lambda j: self._distance(j, middle))]

    def overlapping(self, start: float, end: float) -> list[int]:
        """Windows that overlap [start, end] (touch it, for an instant); a window is at most
        `WINDOW_SECONDS` long, so the search starts that far before."""
        i = bisect_left(self.starts, start - WINDOW_SECONDS)
        found = []
        while i < len(self.starts) and self.starts[i] <= end:
            if self.ends[i] >= start and (self.ends[i] > start or start == end):
                found.append(i)
            i += 1
        return found

    def _distance(self, i: int, t: float) -> float:
        return abs((self.starts[i] + self.ends[i]) / 2 - t)


def _in_context(vectors: Vector, starts: list[float], ends: list[float], reach: int) -> Vector:
    """Each window's print averaged with up to `reach` windows either side of it in the same
    stretch of speech. A 1.6 s window says little about a voice (one person's windows differ about
    as much as two people's do); 4.8 s of a stretch says much more, and most turns are longer. A
    neighbour that sounds like someone else (`CONTEXT_SIMILARITY`) is left out: averaged across a
    change of speaker, two voices would make a third."""
    # Windows of one stretch overlap; a new stretch (or chunk) starts where they stop overlapping.
    stretch = np.cumsum([i > 0 and starts[i] >= ends[i - 1] for i in range(len(starts))])
    summed = np.empty_like(vectors)
    for i in range(len(vectors)):
        near = range(max(0, i - reach), min(len(vectors), i + reach + 1))
        alike = [
            j for j in near if stretch[j] == stretch[i] and vectors[i] @ vectors[j] >= CONTEXT_SIMILARITY
        ]
        summed[i] = vectors[alike].sum(axis=0)
    return _normalised(summed)


# --- provider letters: linked across chunks --------------------------------------------------------


def _linked(
    voices: Sequence[Sequence[Voice] | None],
    segments: Sequence[Sequence[dict[str, Any]]],
    count: SpeakerCount,
) -> list[list[int]]:
    """Each chunk's provider letters mapped to the job's speakers (`_link`), word by word."""
    letters = [[u.get("speaker") or "" for u in units(group)] for group in segments]
    prints = [_letter_prints(v or [], group) for v, group in zip(voices, segments, strict=True)]
    links = _link(prints, count)
    return [[link[k] for k in group] for group, link in zip(letters, links, strict=True)]


def _letter_prints(voices: Sequence[Voice], segments: Sequence[dict[str, Any]]) -> dict[str, Vector | None]:
    """The print of each provider letter in one chunk: the mean of the windows its words fill at
    least half of; None for a letter no window is mostly of."""
    found = units(segments)  # in order, one after the other
    ends = [u["end"] for u in found]
    sums: dict[str, Vector | None] = {u.get("speaker") or "": None for u in found}
    for start, end, vector in voices:
        covered: Counter[str] = Counter()
        i = bisect_left(ends, start)
        while i < len(found) and found[i]["start"] < end:
            overlap = min(end, found[i]["end"]) - max(start, found[i]["start"])
            covered[found[i].get("speaker") or ""] += max(overlap, 0.0)
            i += 1
        letter, filled = covered.most_common(1)[0] if covered else ("", 0.0)
        if filled >= 0.5 * (end - start):
            sums[letter] = _joined(sums[letter], _normalised(np.asarray(vector, dtype=np.float32)))
    return sums


def _link(prints: list[dict[str, Vector | None]], count: SpeakerCount) -> list[dict[str, int]]:
    """Each chunk's provider letters, chunk by chunk, linked to the job's speakers so far
    (`_matched`); a letter left over is a new speaker while the count allows one more."""
    known: list[Vector | None] = []  # each speaker's print so far (None: none of their letters had one)
    links: list[dict[str, int]] = []
    for chunk in prints:
        link = _matched(chunk, known, count)
        for letter in sorted(chunk):
            if letter not in link:
                link[letter] = _new_or_nearest(chunk[letter], known, set(link.values()), count)
        for letter, speaker in link.items():
            known[speaker] = _joined(known[speaker], chunk[letter])
        links.append(link)
    return links


def _matched(
    chunk: dict[str, Vector | None], known: list[Vector | None], count: SpeakerCount
) -> dict[str, int]:
    """The chunk's letters matched one to one to known speakers, by their prints, in the way that
    makes them most alike overall; a pair less alike than `LINK_SIMILARITY` is no match, unless the
    job has all the speakers its count allows."""
    from scipy.optimize import linear_sum_assignment

    letters = [k for k in sorted(chunk) if chunk[k] is not None]
    speakers = [i for i, v in enumerate(known) if v is not None]
    if not letters or not speakers:
        return {}
    similarity = np.array([[_similarity(chunk[k], known[i]) for i in speakers] for k in letters])
    full = len(known) >= count.high
    return {
        letters[r]: speakers[c]
        for r, c in zip(*linear_sum_assignment(-similarity), strict=True)
        if full or similarity[r, c] >= LINK_SIMILARITY
    }


def _new_or_nearest(
    vector: Vector | None, known: list[Vector | None], taken: set[int], count: SpeakerCount
) -> int:
    """A new speaker while the count allows one more; else the most alike speaker (for a letter
    without a print, the first this chunk has not taken)."""
    if len(known) < count.high or not known:
        known.append(None)
        return len(known) - 1
    if vector is not None and any(v is not None for v in known):
        return int(np.argmax([_similarity(vector, v) for v in known]))
    return next((i for i in range(len(known)) if i not in taken), 0)


def _similarity(a: Vector | None, b: Vector | None) -> float:
    """Cosine similarity of two prints (sums of windows' prints); -1 where one is missing."""
    if a is None or b is None:
        return -1.0
    return float(_normalised(a) @ _normalised(b))


def _joined(total: Vector | None, vector: Vector | None) -> Vector | None:
    """A sum of prints with one more added: a speaker's print is the sum of their windows'."""
    if vector is None:
        return total
    return vector if total is None else total + vector
