"""Airflow hooks for the platform's services. They connect lazily in get_conn(), never at parse time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from config.settings import Settings, registry_config

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.database import Database

    from model.registry import Registry


class PlatformMongoHook(BaseHook):
    """The platform's MongoDB database, pinged before it is handed out."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self._client: MongoClient | None = None

    def get_conn(self) -> Database:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        if self._client is None:
            self._client = MongoClient(
                self.settings.mongo_uri,
                serverSelectionTimeoutMS=self.settings.mongo_timeout_ms,
                tz_aware=True,
                uuidRepresentation="standard",
            )
            try:
                self._client.admin.command("ping")
            except PyMongoError as exc:
                self._client.close()
                self._client = None
                raise ConnectionError(f"MongoDB at {_redact(self.settings.mongo_uri)} is unreachable: {exc}") from exc
        return self._client[self.settings.mongo_db]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> PlatformMongoHook:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PlatformRegistryHook(BaseHook):
    """The MLflow registry, probed for reachability, auth, registry and alias support."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def get_conn(self) -> Registry:
        from model.registry import connect

        return connect(registry_config(self.settings))


def _redact(uri: str) -> str:
    """Hide the password in a MongoDB URI for messages and logs."""
    if "@" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
