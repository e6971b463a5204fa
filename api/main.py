"""The API process: `uvicorn --factory api.main:app` (the Procfile, the Dockerfile, ./scripts/run).

uvicorn calls this factory once it has set up logging its own way, so this is where the process's
logging is set up instead: the JSON lines of core/logging.py on stderr, uvicorn's server and access
lines included, credentials redacted. Tests build apps with `api.app.create_app` and keep theirs.
"""

from fastapi import FastAPI

from api.app import create_app
from core.config import get_settings
from core.logging import configure_logging


def app() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
