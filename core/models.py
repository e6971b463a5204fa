"""The models a fleet offers: which names jobs may use, and what each model can do.

A model is a faster-whisper model name (fetched from the Hugging Face hub by faster-whisper, where a
machine can reach it) or a folder holding a CTranslate2 Whisper model, as `Settings.models` lists
them. What a model can do is read from its folder without loading it, so the API can refuse a job
the model cannot run (`task=translate` on an English-only model) before any audio is stored.
"""

import json
from functools import lru_cache
from pathlib import Path

# Whisper's multilingual vocabularies hold 51,865 tokens or more; the English-only ones 51,864.
MULTILINGUAL_VOCABULARY = 51_865


@lru_cache
def is_multilingual(model: str) -> bool:
    """Whether `model` (a folder or a faster-whisper name) can detect languages and translate."""
    folder = Path(model)
    if not folder.is_dir():
        return not model.endswith(".en")  # faster-whisper's names: "tiny.en", "base", "large-v3"
    return _vocabulary_size(folder) >= MULTILINGUAL_VOCABULARY


def _vocabulary_size(folder: Path) -> int:
    if (folder / "vocabulary.json").is_file():
        return len(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8")))
    if (folder / "vocabulary.txt").is_file():
        with (folder / "vocabulary.txt").open(encoding="utf-8") as lines:
            return sum(1 for _ in lines)
    return 0
