import json
import os
import stat

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet, InvalidToken

from mlconnector_pipelines.cli import main
from mlconnector_pipelines.core.credentials import KEY_ENV, CredentialError, CredentialStore


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    return CredentialStore(tmp_path)


def test_round_trip_is_encrypted_at_rest(store):
    store.set("bc-secret", "Zebra-Plaintext-42")
    assert store.get("bc-secret") == "Zebra-Plaintext-42"
    assert "Zebra-Plaintext-42" not in store.store_path.read_text()
    assert stat.S_IMODE(store.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.store_path.stat().st_mode) == 0o600
    assert store.names() == ["bc-secret"]
    assert store.delete("bc-secret") and store.names() == []


def test_rotation_reencrypts_every_entry_and_loses_nothing(store):
    store.set("a", "alpha-value")
    store.set("b", "beta-value")
    old_key = store.key_path.read_bytes()
    old_tokens = store.store_path.read_text()
    store.rotate_key()
    assert store.key_path.read_bytes() != old_key
    assert store.store_path.read_text() != old_tokens
    assert (store.get("a"), store.get("b")) == ("alpha-value", "beta-value")
    with pytest.raises(InvalidToken):  # the old key no longer opens the new tokens
        Fernet(old_key).decrypt(json.loads(store.store_path.read_text())["a"].encode())


def test_wrong_key_is_a_clear_error_and_rotation_refuses(store, monkeypatch):
    store.set("a", "alpha-value")
    before = store.store_path.read_text()
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(CredentialError, match=r"'a' cannot be decrypted with the current key \(\$MLCONNECTOR_CREDENTIALS_KEY\)"):
        store.get("a")
    with pytest.raises(CredentialError, match="nothing was rotated"):
        store.rotate_key()
    assert store.store_path.read_text() == before
    monkeypatch.setenv(KEY_ENV, "not-a-key")
    with pytest.raises(CredentialError, match="not a valid credentials key"):
        store.get("a")


def test_key_file_readable_by_others_is_refused(store):
    store.set("a", "alpha-value")
    os.chmod(store.key_path, 0o644)
    with pytest.raises(CredentialError, match="readable by other users.*chmod 600"):
        store.get("a")


def test_unknown_name_lists_what_is_stored(store):
    store.set("a", "alpha-value")
    with pytest.raises(CredentialError, match=r"'b' is not in .* \(stored: a\)"):
        store.get("b")


def test_cli_set_list_delete_never_print_values(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(KEY_ENV, raising=False)
    runner = CliRunner()
    result = runner.invoke(main, ["credentials", "set", "bc-secret", "--stdin"], input="Hidden-Value-77\n")
    assert result.exit_code == 0, result.output
    listed = runner.invoke(main, ["credentials", "list"])
    assert listed.output.strip() == "bc-secret" and "Hidden-Value-77" not in listed.output
    rotated = runner.invoke(main, ["credentials", "rotate-key"])
    assert rotated.exit_code == 0 and "Hidden-Value-77" not in rotated.output
    assert CredentialStore(tmp_path).get("bc-secret") == "Hidden-Value-77"
    assert runner.invoke(main, ["credentials", "delete", "bc-secret"]).exit_code == 0
    assert runner.invoke(main, ["credentials", "delete", "bc-secret"]).exit_code != 0
