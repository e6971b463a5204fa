"""What a client-given file name may become in storage: a name safe to keep and show, and an
extension safe to put in a storage key. Pure rules, shared by every way audio arrives."""

import re
from pathlib import PurePath

_EXTENSION = re.compile(r"^\.[a-z0-9]{1,8}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_filename(raw: str) -> str:
    name = _CONTROL.sub("", PurePath(raw.replace("\\", "/")).name).strip()
    return name[-255:] or "upload"


def safe_extension(filename: str) -> str:
    extension = PurePath(filename).suffix.lower()
    return extension if _EXTENSION.match(extension) else ""
