"""``local``: one file per key in a local directory, on the shared object-store layer (both roles).

Layout: ``<path>/<prefix>/task/<dag>/<run>/<task>/<map_index>/<key>`` (and ``asset/...``), every
segment encoded by ``statestore.core.naming`` and shortened past the filesystem's 255-byte limit.
A file holds one JSON line of metadata (expiry, encoding), a newline, then the object's bytes, and
is written to a temporary file in the same directory and moved into place with ``os.replace``, so
readers see the old or the new object, never a torn one. Temporary files start with ``.``, which no
encoded segment does, so they never collide with or show up as keys. Emptied directories are
removed after deletes; a writer whose directory a concurrent delete, clear or cleanup (in any thread
or process) removes under it creates it again, so concurrent writers, deleters and clearers of one
scope never fail. Every other ``OSError`` becomes a ``StorageError`` naming the path. References
are ``local://<absolute path>/<object name>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from statestore.core.builtin_plugins import LOCAL_SETTINGS
from statestore.core.config import Config
from statestore.core.errors import StorageError
from statestore.core.objectstore import ListedObject, ObjectStoreBackend, StoredObject

__all__ = ["LocalStoreBackend"]

_CREATE_ATTEMPTS = 100
"""Times a writer recreates its directory after a concurrent delete pruned it (each loss needs a new race)."""


def _walk_error(exc: OSError) -> None:
    """``os.walk``'s error hook: a directory pruned while listing holds nothing; any other error is raised."""
    if not isinstance(exc, FileNotFoundError):
        raise StorageError(f"cannot list {exc.filename}: {exc}") from exc


class LocalStoreBackend(ObjectStoreBackend):
    """Task/asset state as files under ``[statestore_local] path`` (default ``$STATESTORE_HOME/objects``)."""

    name = "local"
    reference_scheme = "local"
    config_section = "statestore_local"
    settings = LOCAL_SETTINGS
    bucket_setting = "path"
    delete_batch_size = 1000
    max_segment_bytes: ClassVar[int | None] = 255

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        prefix: str | None = None,
        threshold: int | None = None,
        compression: str | None = None,
        config: Config | None = None,
    ) -> None:
        super().__init__(
            path=None if path is None else os.fspath(path),
            prefix=prefix,
            threshold=threshold,
            compression=compression,
            config=config,
        )
        self.directory = Path(self.bucket)

    def _default_bucket(self) -> str:
        return str(self.config.home / "objects")

    def _check_bucket(self, bucket: str) -> str:
        """Any directory, made absolute so references stay valid whatever the working directory."""
        return str(Path(bucket.strip()).expanduser().absolute()).rstrip("/") or "/"

    def _path(self, name: str) -> Path:
        return self.directory / name

    # -- primitives ---------------------------------------------------------------------------------

    def _put_object(self, name: str, data: bytes, metadata: Mapping[str, str], expires_at: datetime | None) -> None:
        path = self._path(name)
        header = json.dumps(dict(metadata), sort_keys=True).encode() + b"\n"
        fd, tmp = self._temporary_file(path)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(header)
                out.write(data)
            os.replace(tmp, path)  # the temporary file keeps the directory from being pruned until here
        except BaseException as exc:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {path}: {exc}") from exc
            raise

    def _temporary_file(self, path: Path) -> tuple[int, str]:
        """A new temporary file beside ``path``, creating its directory again whenever a concurrent delete prunes it.

        ``mkstemp`` is tried first (the directory usually exists); a missing directory is created,
        and a prune racing that creation (``FileNotFoundError`` for an ancestor, or ``FileExistsError``
        from ``makedirs`` for a directory that vanished while it checked) just means trying again.
        """
        for _ in range(_CREATE_ATTEMPTS):
            try:
                return tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"cannot write {path}: {exc}") from exc
            try:
                os.makedirs(path.parent, exist_ok=True)
            except (FileNotFoundError, FileExistsError):
                pass
            except OSError as exc:
                raise StorageError(f"cannot write {path}: cannot create {path.parent}: {exc}") from exc
        raise StorageError(
            f"cannot write {path}: its directory was removed by concurrent deletes {_CREATE_ATTEMPTS} times in a row"
        )

    def _read(self, name: str, *, body: bool) -> StoredObject | None:
        path = self._path(name)
        try:
            with path.open("rb") as file:
                header = file.readline()
                data = file.read() if body else b""
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        try:
            metadata = json.loads(header)
        except ValueError as exc:
            raise StorageError(f"{path} has no statestore header; was it written by statestore?") from exc
        return StoredObject(data, metadata)

    def _get_object(self, name: str) -> StoredObject | None:
        return self._read(name, body=True)

    def _head_object(self, name: str) -> Mapping[str, str] | None:
        found = self._read(name, body=False)
        return None if found is None else found.metadata

    def _delete_object(self, name: str) -> None:
        failed = self._delete_objects([name])
        if failed:
            raise StorageError(f"cannot delete {self._path(name)}: {failed[name]}")

    def _list_objects(self, prefix: str) -> Iterator[list[ListedObject]]:
        page: list[ListedObject] = []
        top = self._path(prefix)
        for dirpath, dirnames, filenames in os.walk(top, onerror=_walk_error):
            dirnames.sort()
            relative = Path(dirpath).relative_to(self.directory).as_posix()
            for filename in sorted(filenames):
                if not filename.startswith("."):
                    page.append(ListedObject(f"{relative}/{filename}" if relative != "." else filename))
                    if len(page) == self.delete_batch_size:
                        yield page
                        page = []
        if page:
            yield page

    def _delete_objects(self, names: Sequence[str]) -> Mapping[str, str]:
        failures: dict[str, str] = {}
        parents: set[Path] = set()
        for name in names:
            path = self._path(name)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                failures[name] = str(exc)
            parents.add(path.parent)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._prune(parent)
        return failures

    def _prune(self, directory: Path) -> None:
        """Remove ``directory`` and its ancestors below the root while they are empty."""
        while directory != self.directory and self.directory in directory.parents:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # not empty: stop climbing
                return
            directory = directory.parent
