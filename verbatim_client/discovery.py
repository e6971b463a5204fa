"""What `verbatim transcribe` works on: the files, folders and URLs named, and where each one's
transcripts go. Pure path logic, no network: a second run decides what to skip from this alone."""

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from verbatim_client.client import is_url

FORMATS = ("txt", "srt", "vtt", "json")

# What a folder is searched for. A file named on the command line is sent whatever its name: the
# service decides whether it holds audio (a 415 if not).
AUDIO_SUFFIXES = frozenset(
    {
        ".wav",
        ".wave",
        ".mp3",
        ".m4a",
        ".m4b",
        ".aac",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".spx",
        ".wma",
        ".aif",
        ".aiff",
        ".aifc",
        ".amr",
        ".ape",
        ".au",
        ".caf",
        ".mka",
        ".mp2",
        ".ac3",
        ".wv",
        ".weba",
        ".3ga",
    }
)
VIDEO_SUFFIXES = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".wmv",
        ".flv",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".m2ts",
        ".3gp",
        ".3g2",
        ".ogv",
        ".vob",
        ".asf",
        ".mxf",
    }
)
MEDIA_SUFFIXES = AUDIO_SUFFIXES | VIDEO_SUFFIXES


@dataclass(frozen=True)
class Source:
    """One recording to transcribe: `label` as the user named or found it, `location` a Path or a
    URL, and the file each format is written to."""

    label: str
    location: Path | str
    outputs: dict[str, Path] = field(hash=False)

    def done(self) -> bool:
        """Every output is already there (a partial write never is: outputs are renamed in whole)."""
        return all(path.is_file() for path in self.outputs.values())


@dataclass(frozen=True)
class Problem:
    label: str
    reason: str


@dataclass
class Plan:
    sources: list[Source] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def plan(args: Iterable[str], formats: Iterable[str], out: Path | None) -> Plan:
    """Each argument's recordings with their outputs, in order; a path that is missing, a folder
    without media and outputs that two inputs would share become problems (failures to report),
    not reasons to stop the rest. A file named twice is transcribed once."""
    result, seen, owners = Plan(), set[str](), dict[Path, str]()
    for arg in args:
        found = list(_expand(arg, tuple(formats), out))
        if not found:
            result.problems.append(Problem(arg, _nothing_in(arg)))
        for source in found:
            key = str(source.location) if is_url(source.location) else str(Path(source.location).resolve())
            if key in seen:
                continue
            seen.add(key)
            clash = next((owners[p] for p in source.outputs.values() if p in owners), None)
            if clash is not None:
                result.problems.append(Problem(source.label, f"its outputs would overwrite those of {clash}"))
                continue
            owners.update(dict.fromkeys(source.outputs.values(), source.label))
            result.sources.append(source)
    return result


def _nothing_in(arg: str) -> str:
    return "no audio or video files in this folder" if Path(arg).is_dir() else "no such file or folder"


def _expand(arg: str, formats: tuple[str, ...], out: Path | None) -> Iterator[Source]:
    if is_url(arg):
        yield Source(arg, arg, outputs_for(url_stem(arg), Path(), formats, out, beside=Path.cwd()))
        return
    path = Path(arg)
    if path.is_file():
        yield Source(arg, path, outputs_for(path.stem, Path(), formats, out, beside=path.parent))
    elif path.is_dir():
        for found in media_in(path):
            relative = found.relative_to(path)
            outputs = outputs_for(found.stem, relative.parent, formats, out, beside=found.parent)
            yield Source(str(found), found, outputs)


def media_in(folder: Path) -> list[Path]:
    """Audio and video files under `folder`, recursively, sorted; hidden files and folders (such
    as macOS's `._talk.wav` resource forks) are left out, and symlinked folders are not followed."""
    found: list[Path] = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found.extend(
            Path(root) / name
            for name in sorted(files)
            if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_SUFFIXES
        )
    return found


def outputs_for(
    stem: str, relative: Path, formats: Iterable[str], out: Path | None, *, beside: Path
) -> dict[str, Path]:
    """`<stem>.<format>` beside the input, or in `out` (keeping the input's sub-folder within a
    folder named on the command line, so two `a.wav` in different folders stay apart)."""
    folder = out / relative if out is not None else beside
    return {fmt: folder / f"{stem}.{fmt}" for fmt in formats}


def url_filename(url: str) -> str:
    """What a URL's job is called (sent as its `filename`): its path's last part, else `audio`."""
    name = PurePosixPath(unquote(urlsplit(url).path)).name
    cleaned = "".join(c for c in name if c.isprintable() and c not in '/\\:*?"<>|').strip(". ")
    return cleaned or "audio"


def url_stem(url: str) -> str:
    """The name a URL's outputs take: its filename without the suffix."""
    return PurePosixPath(url_filename(url)).stem or "audio"
