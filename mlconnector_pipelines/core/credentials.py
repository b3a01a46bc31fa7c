"""Credentials encrypted at rest (Fernet from `cryptography`).

Values live in `<data_dir>/credentials.json`, each encrypted on its own; the key comes from
`MLCONNECTOR_CREDENTIALS_KEY` or from `<data_dir>/credentials.key`, which must be readable by
its owner only. connector.yaml names a credential; it never holds the value.
"""

from __future__ import annotations

import json
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

    # -- key handling ---------------------------------------------------------------------------

    def _key(self, *, create: bool) -> bytes:
        from_env = os.environ.get(KEY_ENV)
        if from_env:
            return _valid_key(from_env.encode(), f"${KEY_ENV}")
        if self.key_path.exists():
            mode = stat.S_IMODE(self.key_path.stat().st_mode)
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise CredentialError(
                    f"{self.key_path} is readable by other users (mode {mode:o}); run `chmod 600 {self.key_path}`")
            return _valid_key(self.key_path.read_bytes().strip(), str(self.key_path))
        if not create:
            raise CredentialError(
                f"no credentials key: set ${KEY_ENV} or create one with `mlconnector credentials set`")
        key = Fernet.generate_key()
        _write_private(self.key_path, key)
        return key

    # -- entries --------------------------------------------------------------------------------

    def _entries(self) -> dict[str, str]:
        if not self.store_path.exists():
            return {}
        return json.loads(self.store_path.read_text())

    def _save(self, entries: dict[str, str]) -> None:
        _write_private(self.store_path, json.dumps(entries, indent=2, sort_keys=True).encode())

    def names(self) -> list[str]:
        return sorted(self._entries())

    def set(self, name: str, value: str) -> None:
        if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise CredentialError(f"credential names use letters, digits, '-', '_' and '.'; got {name!r}")
        if not value:
            raise CredentialError(f"credential {name!r}: empty value")
        fernet = Fernet(self._key(create=True))
        entries = self._entries()
        entries[name] = fernet.encrypt(value.encode()).decode()
        self._save(entries)

    def get(self, name: str) -> str:
        entries = self._entries()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise CredentialError(f"credential {name!r} is not in {self.store_path} (stored: {known}); "
                                  f"add it with `mlconnector credentials set {name}`")
        try:
            return Fernet(self._key(create=False)).decrypt(entries[name].encode()).decode()
        except InvalidToken:
            raise CredentialError(
                f"credential {name!r} cannot be decrypted with the current key ({self._key_source()}): "
                "it was encrypted with a different key") from None

    def delete(self, name: str) -> bool:
        entries = self._entries()
        if entries.pop(name, None) is None:
            return False
        self._save(entries)
        return True

    def rotate_key(self) -> Path:
        """Re-encrypt every entry under a new key; returns where the new key was written.

        Every entry is decrypted first, so a wrong current key changes nothing.
        """
        old = Fernet(self._key(create=False))
        entries = self._entries()
        for name, token in entries.items():
            try:
                old.decrypt(token.encode())
            except InvalidToken:
                raise CredentialError(f"credential {name!r} cannot be decrypted with the current key; "
                                      "nothing was rotated") from None
        new_key = Fernet.generate_key()
        rotator = MultiFernet([Fernet(new_key), old])
        rotated = {name: rotator.rotate(token.encode()).decode() for name, token in entries.items()}
        # Write the new key beside the old store first: a crash between the two writes leaves the
        # store readable with the old key, which `rotate-key` can simply be run again with.
        pending = self.key_path.with_suffix(".key.new")
        _write_private(pending, new_key)
        self._save(rotated)
        pending.replace(self.key_path)
        return self.key_path

    def _key_source(self) -> str:
        return f"${KEY_ENV}" if os.environ.get(KEY_ENV) else str(self.key_path)


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
