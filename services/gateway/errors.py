"""Rasa's error body: `{version, status: "failure", message, reason, details, help, code}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common.errors import DependencyUnavailable
from services.common.version import VERSION
from services.gateway.auth import AuthError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error answered in Rasa's shape."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.details = details or {}


def error_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "version": VERSION,
        "status": "failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "help": None,
        "code": code,
    }


def install(app: FastAPI) -> None:
    """Answer every error, validation and auth included, in Rasa's shape."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.reason, str(exc), exc.details), exc.code)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            error_body(exc.status, exc.reason, str(exc)), exc.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": ".".join(str(p) for p in e.get("loc", ())), "msg": e.get("msg", "")}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"loc": "body", "msg": "invalid"}
        message = f"invalid request: {first['loc']}: {first['msg']}"
        return JSONResponse(error_body(400, "BadRequest", message, {"errors": problems}), 400)

    @app.exception_handler(DependencyUnavailable)
    async def _unavailable(_: Request, exc: DependencyUnavailable) -> JSONResponse:
        logger.warning("a dependency is unavailable: %s", exc)
        return JSONResponse(error_body(503, "Unavailable", str(exc)), 503)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("request failed")
        message = f"{type(exc).__name__}: the gateway could not answer (see its log)"
        return JSONResponse(error_body(500, "ServerError", message), 500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = "NotFound" if exc.status_code == 404 else "HttpError"
        return JSONResponse(error_body(exc.status_code, reason, str(exc.detail)), exc.status_code)
