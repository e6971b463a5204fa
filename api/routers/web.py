"""The web app: one page (`api/web/index.html`) for each of its paths, which the page's script
routes by history, and its assets under `/static`.

Both are answered with `Cache-Control: no-cache`: a browser keeps them but asks again (a cheap 304
while they are unchanged), so a new release is picked up at the next load, without a build step
that would put versions in the file names.
"""

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
INDEX = WEB_DIR / "index.html"
STATIC_PREFIX = "/static"
PAGES = ("/", "/login", "/register", "/jobs", "/jobs/{job_id}", "/keys", "/account", "/admin/users")
NO_CACHE = {"Cache-Control": "no-cache"}

_PAGE_PATTERNS: list[re.Pattern[str]] = [compile_path(page)[0] for page in PAGES]

router = APIRouter(include_in_schema=False)


def index() -> FileResponse:
    return FileResponse(INDEX, media_type="text/html", headers=NO_CACHE)


for _page in PAGES:
    router.add_api_route(_page, index, methods=["GET"], response_class=FileResponse)


class _Assets(StaticFiles):
    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(NO_CACHE)
        return response


def mount_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(STATIC_PREFIX, _Assets(directory=WEB_DIR), name="static")


def is_web_path(path: str) -> bool:
    """Whether `path` is one of the web app's pages or assets (api/security_headers.py)."""
    return path.startswith(STATIC_PREFIX + "/") or any(p.match(path) for p in _PAGE_PATTERNS)
