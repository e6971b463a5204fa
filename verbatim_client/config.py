"""Where the command finds its service and key: flags, then VERBATIM_URL / VERBATIM_API_KEY, then
what `verbatim login` stored in the user's config folder (readable by the user alone: mode 0600)."""

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

URL_VARIABLE, KEY_VARIABLE = "VERBATIM_URL", "VERBATIM_API_KEY"


class ConfigError(Exception):
    """Settings missing or unreadable: the command cannot start (exit code 2)."""


@dataclass(frozen=True)
class Login:
    url: str
    api_key: str


def config_path(environ: Mapping[str, str] = os.environ) -> Path:
    """`$XDG_CONFIG_HOME/verbatim/config.json`, by default `~/.config/verbatim/config.json`."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "verbatim" / "config.json"


def stored(path: Path) -> dict[str, str]:
    """What `verbatim login` saved; nothing when it never ran."""
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} ({exc}): run `verbatim login` again") from None
    if not isinstance(body, dict):
        raise ConfigError(f"{path} is not a verbatim config: run `verbatim login` again")
    return {k: v for k, v in body.items() if isinstance(v, str)}


def save(path: Path, login: Login) -> None:
    """Written whole or not at all (a temporary file renamed over the old one), created 0600 so the
    key is never readable by others, not even for a moment; its folder 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # before the key is written: a leftover file kept its old mode
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump({"url": login.url, "api_key": login.api_key}, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def resolve(url: str | None, api_key: str | None, environ: Mapping[str, str] = os.environ) -> Login:
    """Each setting from the first place that has it: the flag, the environment, the stored login."""
    saved: dict[str, str] = {}
    if not (url and api_key):
        saved = stored(config_path(environ))
    chosen_url = url or environ.get(URL_VARIABLE) or saved.get("url")
    chosen_key = api_key or environ.get(KEY_VARIABLE) or saved.get("api_key")
    if not chosen_url:
        raise ConfigError(f"no service URL: pass --url, set {URL_VARIABLE}, or run `verbatim login`")
    if not chosen_key:
        raise ConfigError(f"no API key: pass --api-key, set {KEY_VARIABLE}, or run `verbatim login`")
    return Login(chosen_url, chosen_key)
