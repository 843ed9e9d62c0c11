"""Binary artifacts (model weights, cached graphs) kept beside the collections, never inside documents.

MongoDB documents stop at 16 MB, so large blobs go to GridFS on a server, to files beside the
embedded store, or to a dict for ``memory://``. Every backend offers the same small interface.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from monty.json import MSONable


class ArtifactStore(MSONable, ABC):
    """Key → bytes store. Keys are plain strings such as ``graphs/<settings_hash>/<structure_id>``.

    MSONable (like maggma Stores), so builders holding one run under maggma's ``mrun``.
    """

    @abstractmethod
    def put(self, key: str, data: bytes, metadata: dict[str, Any] | None = None) -> str:
        """Store ``data`` under ``key`` (replacing it atomically); return its sha256."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the bytes under ``key``; raise ``KeyError`` when absent."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    @abstractmethod
    def keys(self, prefix: str = "") -> list[str]:
        """All keys starting with ``prefix``."""


class MemoryArtifactStore(ArtifactStore):
    """Artifacts in a dict; lives as long as the object (for ``memory://``)."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def put(self, key: str, data: bytes, metadata: dict[str, Any] | None = None) -> str:
        self._blobs[key] = bytes(data)
        return hashlib.sha256(data).hexdigest()

    def get(self, key: str) -> bytes:
        return self._blobs[key]

    def exists(self, key: str) -> bool:
        return key in self._blobs

    def delete(self, key: str) -> None:
        self._blobs.pop(key, None)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self._blobs if k.startswith(prefix))


class DirectoryArtifactStore(ArtifactStore):
    """Artifacts as files under a directory (beside the embedded store). Writes are atomic renames."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in {".", ".."} for p in parts):
            raise ValueError(f"invalid artifact key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes, metadata: dict[str, Any] | None = None) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()

    def get(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise KeyError(key)
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> list[str]:
        if not self.root.exists():
            return []
        found = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in found if k.startswith(prefix) and not Path(k).name.startswith(".tmp-"))


class GridFSArtifactStore(ArtifactStore):
    """Artifacts in GridFS of the same MongoDB database (bucket ``artifacts``)."""

    def __init__(self, uri: str, database: str, bucket: str = "artifacts") -> None:
        import gridfs
        from pymongo import MongoClient

        self.uri, self.database, self.bucket = uri, database, bucket
        db: Any = MongoClient(uri)[database]
        self._bucket = gridfs.GridFSBucket(db, bucket_name=bucket)
        self._files = db[f"{bucket}.files"]

    def put(self, key: str, data: bytes, metadata: dict[str, Any] | None = None) -> str:
        digest = hashlib.sha256(data).hexdigest()
        old = [f["_id"] for f in self._files.find({"filename": key}, {"_id": 1})]
        self._bucket.upload_from_stream(key, data, metadata={**(metadata or {}), "sha256": digest})
        for file_id in old:  # replace only after the new version is fully written
            self._bucket.delete(file_id)
        return digest

    def get(self, key: str) -> bytes:
        import gridfs

        try:
            return self._bucket.open_download_stream_by_name(key).read()
        except gridfs.errors.NoFile as exc:
            raise KeyError(key) from exc

    def exists(self, key: str) -> bool:
        return self._files.count_documents({"filename": key}, limit=1) > 0

    def delete(self, key: str) -> None:
        for f in self._files.find({"filename": key}, {"_id": 1}):
            self._bucket.delete(f["_id"])

    def keys(self, prefix: str = "") -> list[str]:
        import re

        names = self._files.distinct("filename", {"filename": {"$regex": "^" + re.escape(prefix)}})
        return sorted(names)
