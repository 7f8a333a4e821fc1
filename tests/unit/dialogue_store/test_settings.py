"""`PARLEY_STORE_BACKEND` chooses the dialogue worker's hot store: Redis (default) or SQL alone."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from schemas.project.loader import load_project
from services.dialogue.store.redis_store import RedisHotStore
from services.dialogue.store.settings import StoreSettings
from services.dialogue.store.sql_archive import SqlArchive
from services.dialogue.store.sql_hot_store import AppendedArchive, SqlHotStore
from services.dialogue.worker_cli import DialogueSettings, DialogueWorker
from tests.unit.dialogue.test_handlers import DOMAIN, Table


def test_the_backend_is_redis_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARLEY_STORE_BACKEND", raising=False)
    assert StoreSettings().backend == "redis"
    monkeypatch.setenv("PARLEY_STORE_BACKEND", "sql")
    assert StoreSettings().backend == "sql"
    monkeypatch.setenv("PARLEY_STORE_BACKEND", "mongo")
    with pytest.raises(pydantic.ValidationError, match="'redis' or 'sql'"):
        StoreSettings()


@pytest.mark.parametrize(
    ("backend", "hot", "archive"),
    [("redis", RedisHotStore, SqlArchive), ("sql", SqlHotStore, AppendedArchive)],
)
def test_the_worker_composes_the_chosen_store(
    tmp_path: Path, backend: str, hot: type, archive: type
) -> None:
    (tmp_path / "domain.yml").write_text(DOMAIN)
    (tmp_path / "config.yml").write_text("language: en\n")
    url = f"sqlite+aiosqlite:///{tmp_path / 'archive.db'}"
    store = StoreSettings(backend=backend, database_url=url)
    worker = DialogueWorker(
        DialogueSettings(project=tmp_path),
        store,
        bus=None,  # type: ignore[arg-type]  # never started: the constructor does no I/O
        project=load_project(tmp_path),
        predictor=Table({}),
    )
    assert type(worker.hot) is hot
    assert type(worker.archive) is archive
    assert worker.service.hot is worker.hot
    assert worker.service.archive is worker.archive
