"""Liveness and readiness probes."""

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from application.health import check_readiness
from entrypoints.api.dependencies import Inspector
from entrypoints.api.errors import problem_responses
from entrypoints.api.problems import Problem

router = APIRouter(tags=["health"])


class HealthOut(BaseModel):
    status: Literal["ok"]


@router.get("/healthz", response_model=HealthOut, summary="Liveness")
async def healthz() -> HealthOut:
    """200 while the process runs. It checks nothing else: a restart cures only a hung process."""
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=HealthOut,
    summary="Readiness",
    responses=problem_responses(503),
)
async def readyz(
    inspector: Inspector,
) -> HealthOut | JSONResponse:
    """200 when the database answers and its schema is at the migration head, else 503."""
    readiness = await check_readiness(inspector)
    if not readiness.ready:
        return Problem(503, readiness.detail, slug="not-ready").response()
    return HealthOut(status="ok")
