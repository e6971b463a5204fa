"""The models jobs may name: the fleet's allow-list (`VERBATIM_MODELS`), as the caller's tier sees it."""

from fastapi import APIRouter

from api.deps import CurrentUser, SettingsDep
from api.schemas import ModelList, ModelOut, error_responses
from core.models import is_multilingual
from core.tiers import allowed_models

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, responses=error_responses(401))
def list_models(user: CurrentUser, settings: SettingsDep) -> ModelList:
    """The models your tier may give as `model` in `POST /v1/jobs` (OpenAI's list shape), with
    whether each is multilingual (can detect languages and `translate`) and which is the default."""
    table, default = settings.model_table, settings.default_model_name
    return ModelList(
        data=[
            ModelOut(id=name, multilingual=is_multilingual(table[name]), default=name == default)
            for name in allowed_models(user.tier, table, default)
        ]
    )
