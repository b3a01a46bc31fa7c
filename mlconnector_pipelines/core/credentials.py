"""Credentials encrypted at rest (Fernet from `cryptography`).

Values live in `<data_dir>/credentials.json`, each encrypted on its own; the key comes from
`MLCONNECTOR_CREDENTIALS_KEY` or from `<data_dir>/credentials.key`, which must be readable by
its owner only. connector.yaml names a credential; it never holds the value.

One key opens every entry: a write under any other key is refused, and a store that cannot be
read is never replaced, since either would lose secrets that may exist nowhere else.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import ConnectorError

KEY_ENV = "MLCONNECTOR_CREDENTIALS_KEY"
STORE_FILE = "credentials.json"
KEY_FILE = "credentials.key"

log = logging.getLogger("mlconnector.credentials")


class CredentialError(ConnectorError):
    pass


@dataclass
class CredentialStore:
    directory: Path

    @property
    def store_path(self) -> Path:
        return self.directory / STORE_FILE

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def pending_key_path(self) -> Path:
        return self.directory / f"{KEY_FILE}.new"

    # -- key handling ---------------------------------------------------------------------------

    def _current_key(self) -> bytes | None:
        from_env = os.environ.get(KEY_ENV)
        if from_env:
            return _valid_key(from_env.encode(), f"${KEY_ENV}")
        if self.key_path.exists():
            return _read_key_file(self.key_path)
        return None

    def _open(self) -> tuple[dict[str, str], bytes | None]:
        """The entries and the key to use (None if there is none), once an interrupted rotation is settled.

        `rotate_key` writes the pending key, re-encrypts the store, then moves the key into place,
        so a crash in between leaves a store that only one of the two keys opens.
        """
        entries = self._entries()
        current = self._current_key()
        pending = self.pending_key_path
        if not pending.exists():
            return entries, current
        if current is not None and _opens(current, entries):
            pending.unlink()  # crashed before the store was re-encrypted: the pending key protects nothing
            return entries, current
        adopted = _read_key_file(pending)
        if not _opens(adopted, entries):
            return entries, current  # not left by our rotation of this store: it is not ours to remove
        pending.replace(self.key_path)
        if os.environ.get(KEY_ENV):
            log.warning(
                "finished an interrupted `rotate-key`: the credentials are now encrypted with the key "
                "in %s, and $%s still holds the old key: set it to the content of %s, or unset it",
                self.key_path,
                KEY_ENV,
                self.key_path,
            )
        else:
            log.warning("finished an interrupted `rotate-key`: moved %s to %s", pending, self.key_path)
        return entries, adopted

    def _no_key(self, entries: dict[str, str]) -> CredentialError:
        if not entries:
            return CredentialError(
                f"no credentials key: set ${KEY_ENV} or create one with `mlconnector credentials set`"
            )
        return CredentialError(
            f"the credentials key is missing: {self.store_path} holds {len(entries)} credential(s), but ${KEY_ENV} "
            f"is not set and {self.key_path} does not exist. Restore {self.key_path} (or set ${KEY_ENV}) with the key "
            "they were encrypted with; no new key was created, since it could not open them"
        )

    def _wrong_key(self, names: list[str], why: str) -> CredentialError:
        if os.environ.get(KEY_ENV):
            fix = (
                f"Set ${KEY_ENV} to the key they were encrypted with (after `mlconnector credentials rotate-key` "
                f"that is the content of {self.key_path}), or unset it to use {self.key_path}"
            )
        else:
            fix = f"Restore {self.key_path} with the key they were encrypted with, or set ${KEY_ENV} to that key"
        label = "credential" if len(names) == 1 else "credentials"
        return CredentialError(
            f"{label} {', '.join(map(repr, names))} cannot be decrypted with the current key "
            f"({self._key_source()}): {why}. {fix}"
        )

    def _key_source(self) -> str:
        return f"${KEY_ENV}" if os.environ.get(KEY_ENV) else str(self.key_path)

    # -- entries --------------------------------------------------------------------------------

    def _entries(self) -> dict[str, str]:
        if not self.store_path.exists():
            return {}
        cause = (
            "it was probably truncated (disk full, interrupted copy) or edited by hand. Nothing was changed: "
            "restore it from a backup; only if its secrets are lost, move it aside to start an empty store"
        )
        try:
            entries = json.loads(self.store_path.read_bytes())
        except ValueError as exc:  # JSONDecodeError, or bytes that are not text at all
            raise CredentialError(f"{self.store_path} is not valid JSON ({exc}); {cause}") from None
        if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
            raise CredentialError(f"{self.store_path} is not a mapping of credential name -> encrypted token; {cause}")
        return entries

    def _save(self, entries: dict[str, str]) -> None:
        _write_private(self.store_path, json.dumps(entries, indent=2, sort_keys=True).encode())

    def names(self) -> list[str]:
        return sorted(self._open()[0])

    def set(self, name: str, value: str) -> None:
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise CredentialError(f"credential names use letters, digits, '-', '_' and '.'; got {name!r}")
        if not value:
            raise CredentialError(f"credential {name!r}: empty value")
        entries, key = self.writable()
        if key is None:
            key = Fernet.generate_key()
            _write_private(self.key_path, key)
        entries[name] = Fernet(key).encrypt(value.encode()).decode()
        self._save(entries)

    def writable(self) -> tuple[dict[str, str], bytes | None]:
        """The entries and key a write would use, or the error it would meet (asked before prompting for a value).

        The key is None only for an empty store, where `set` may create one.
        """
        entries, key = self._open()
        if key is None:
            if entries:
                raise self._no_key(entries)
            return entries, None
        if unreadable := _undecryptable(key, entries):
            raise self._wrong_key(
                unreadable,
                f"the current key does not open the existing entries of {self.store_path}, so nothing was written",
            )
        return entries, key

    def get(self, name: str) -> str:
        entries, key = self._open()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise CredentialError(
                f"credential {name!r} is not in {self.store_path} (stored: {known}); "
                f"add it with `mlconnector credentials set {name}`"
            )
        if key is None:
            raise self._no_key(entries)
        try:
            return Fernet(key).decrypt(entries[name].encode()).decode()
        except InvalidToken:
            raise self._wrong_key([name], "it was encrypted with a different key") from None

    def delete(self, name: str) -> bool:
        # No key needed: removing an entry cannot mix keys, and it is how to drop one that no key opens.
        entries, _ = self._open()
        if entries.pop(name, None) is None:
            return False
        self._save(entries)
        return True

    def rotate_key(self) -> Path:
        """Re-encrypt every entry under a new key; returns where the new key was written.

        Every entry is decrypted first, so a wrong current key changes nothing.
        """
        entries, key = self._open()
        if key is None:
            raise self._no_key(entries)
        if unreadable := _undecryptable(key, entries):
            raise self._wrong_key(
                unreadable,
                f"the current key does not open the existing entries of {self.store_path}, so nothing was rotated",
            )
        new_key = Fernet.generate_key()
        rotator = MultiFernet([Fernet(new_key), Fernet(key)])
        rotated = {name: rotator.rotate(token.encode()).decode() for name, token in entries.items()}
        # The new key is written before the store it opens, so a crash at any point leaves a key on
        # disk that opens the store; `_open` then adopts or drops the pending one.
        _write_private(self.pending_key_path, new_key)
        self._save(rotated)
        self.pending_key_path.replace(self.key_path)
        return self.key_path


def _undecryptable(key: bytes, entries: dict[str, str]) -> list[str]:
    fernet = Fernet(key)
    unreadable = []
    for name, token in sorted(entries.items()):
        try:
            fernet.decrypt(token.encode())
        except InvalidToken:
            unreadable.append(name)
    return unreadable


def _opens(key: bytes, entries: dict[str, str]) -> bool:
    return not _undecryptable(key, entries)


def _read_key_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialError(f"{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")
    return _valid_key(path.read_bytes().strip(), str(path))


def _valid_key(key: bytes, source: str) -> bytes:
    try:
        Fernet(key)
    except (ValueError, TypeError):
        raise CredentialError(f"{source} is not a valid credentials key (32 url-safe base64 bytes)") from None
    return key


def _write_private(path: Path, content: bytes) -> None:
    """Atomic write of a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
