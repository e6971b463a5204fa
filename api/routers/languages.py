"""The languages a job may name as `language` (what a page offers in its language choice)."""

from fastapi import APIRouter

from api.schemas import LanguageList, LanguageOut
from core.languages import LANGUAGE_NAMES

router = APIRouter(prefix="/v1/languages", tags=["models"])

# The list never changes while the process runs: built once, not per request.
_BY_NAME = LanguageList(
    data=[
        LanguageOut(code=code, name=name)
        for code, name in sorted(LANGUAGE_NAMES.items(), key=lambda item: item[1])
    ]
)


@router.get("", response_model=LanguageList)
def list_languages() -> LanguageList:
    """Every code `POST /v1/jobs` takes as `language`, with its English name, by name. Only a
    multilingual model (`GET /v1/models`) transcribes other languages than English."""
    return _BY_NAME
