import io
import json
import os
import pathlib
import stat
import sys

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
    with pytest.raises(
        CredentialError, match=r"'a' cannot be decrypted with the current key \(\$MLCONNECTOR_CREDENTIALS_KEY\)"
    ):
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


def test_cli_credentials_go_where_the_runs_config_reads_them(tmp_path, monkeypatch):
    """`credentials set` stored into the default data_dir whatever connector.yaml the runs use, whose run then
    said the credential was missing and to set it: exactly what the person had just done."""
    import yaml

    from mlconnector_pipelines.config import load_config

    monkeypatch.delenv("MLCONNECTOR_DATA_DIR", raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    production = tmp_path / "prod"
    path = tmp_path / "prod.yaml"
    path.write_text(yaml.safe_dump({"profile": "sandbox", "data_dir": str(production)}))
    result = CliRunner().invoke(main, ["credentials", "--config", str(path), "set", "audit_url", "--stdin"],
                                input="postgresql+psycopg2://u:pw@db/audit\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_config(path).data_dir == production
    assert CredentialStore(production).get("audit_url") == "postgresql+psycopg2://u:pw@db/audit"
    assert not (tmp_path / "data" / "credentials.json").exists()


def _run_cli(monkeypatch, capsys, *args):
    """The installed `mlconnector` entry point, in process: (exit code, stderr)."""
    from mlconnector_pipelines.cli import run

    monkeypatch.setattr(sys, "argv", ["mlconnector", *args])
    with pytest.raises(SystemExit) as exited:
        run()
    return exited.value.code, capsys.readouterr().err


def _pending(store):
    """Where rotate-key writes the new key before the store it opens."""
    return store.directory / "credentials.key.new"


def _replace_key_file(store):
    store.key_path.unlink()
    store.key_path.write_bytes(Fernet.generate_key())
    os.chmod(store.key_path, 0o600)


@pytest.mark.parametrize("change", ["new env key", "replaced key file"])
def test_set_under_a_different_key_is_refused_and_writes_nothing(store, monkeypatch, change):
    store.set("a", "alpha-value")
    before = store.store_path.read_bytes()
    if change == "new env key":
        monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
        source = r"\$MLCONNECTOR_CREDENTIALS_KEY"
    else:
        _replace_key_file(store)
        source = str(store.key_path)
    with pytest.raises(
        CredentialError,
        match=rf"'a' cannot be decrypted with the current key \({source}\): the current "
        r"key does not open the existing entries .* nothing was written",
    ):
        store.set("b", "beta-value")
    assert store.store_path.read_bytes() == before


def test_cli_set_under_a_different_key_exits_2_and_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLCONNECTOR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(KEY_ENV, raising=False)
    CredentialStore(tmp_path).set("a", "alpha-value")
    before = (tmp_path / "credentials.json").read_bytes()
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    monkeypatch.setattr(sys, "stdin", io.StringIO("beta-value\n"))
    code, err = _run_cli(monkeypatch, capsys, "credentials", "set", "b", "--stdin")
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert "does not open the existing entries" in err and f"Set ${KEY_ENV} to the key" in err
    assert (tmp_path / "credentials.json").read_bytes() == before


def test_cli_set_refuses_before_asking_for_the_secret(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLCONNECTOR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(KEY_ENV, raising=False)
    CredentialStore(tmp_path).set("a", "alpha-value")
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    stdin = io.StringIO("beta-value\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    code, err = _run_cli(monkeypatch, capsys, "credentials", "set", "b", "--stdin")
    assert code == 2 and "does not open the existing entries" in err
    assert stdin.tell() == 0  # the secret was never read


def test_set_with_entries_but_no_key_creates_no_key(store):
    store.set("a", "alpha-value")
    before = store.store_path.read_bytes()
    store.key_path.unlink()
    for attempt in (lambda: store.set("b", "beta-value"), lambda: store.get("a"), store.rotate_key):
        with pytest.raises(CredentialError, match=r"key is missing: .* holds 1 credential.* no new key was created"):
            attempt()
    assert not store.key_path.exists() and store.store_path.read_bytes() == before


CORRUPT = {
    "truncated": None,  # the first half of a real store
    "not text": b"\xff\xfe\x00garbage",
    "a list": b'["a"]',
    "a non-string token": b'{"a": 1}',
}


@pytest.mark.parametrize("kind", CORRUPT)
def test_corrupt_store_is_a_clear_error_and_never_replaced(store, kind):
    store.set("a", "alpha-value")
    key = store.key_path.read_bytes()
    content = CORRUPT[kind] or store.store_path.read_bytes()[: len(store.store_path.read_bytes()) // 2]
    store.store_path.write_bytes(content)
    expected = "is not valid JSON" if kind in ("truncated", "not text") else "is not a mapping of credential name"
    operations = {
        "get": lambda: store.get("a"),
        "names": store.names,
        "set": lambda: store.set("a", "new-value"),
        "delete": lambda: store.delete("a"),
        "rotate": store.rotate_key,
    }
    for operation in operations.values():
        with pytest.raises(CredentialError, match=rf"{store.store_path}.*{expected}.*probably truncated"):
            operation()
    assert store.store_path.read_bytes() == content and store.key_path.read_bytes() == key
    assert not _pending(store).exists()


def test_cli_corrupt_store_exits_2_and_names_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLCONNECTOR_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(KEY_ENV, raising=False)
    (tmp_path / "credentials.json").write_text('{"a": "gAAAA')
    for args in (["list"], ["delete", "a"], ["rotate-key"]):
        code, err = _run_cli(monkeypatch, capsys, "credentials", *args)
        assert code == 2 and err.startswith("error: ") and "Traceback" not in err
        assert f"{tmp_path / 'credentials.json'} is not valid JSON" in err
    assert (tmp_path / "credentials.json").read_text() == '{"a": "gAAAA'
    assert not (tmp_path / "credentials.key").exists()


def test_rotation_crash_before_the_store_is_reencrypted_drops_the_pending_key(store, monkeypatch):
    store.set("a", "alpha-value")
    old_key, before = store.key_path.read_bytes(), store.store_path.read_bytes()
    with monkeypatch.context() as crash:
        crash.setattr(CredentialStore, "_save", lambda self, entries: (_ for _ in ()).throw(OSError("crash")))
        with pytest.raises(OSError, match="crash"):
            store.rotate_key()
    assert _pending(store).exists() and store.store_path.read_bytes() == before
    assert CredentialStore(store.directory).get("a") == "alpha-value"
    assert not _pending(store).exists() and store.key_path.read_bytes() == old_key


def _crash_before_the_key_moves(store, monkeypatch):
    """rotate-key killed after re-encrypting the store, before the pending key is renamed into place."""
    with monkeypatch.context() as crash:
        crash.setattr(pathlib.Path, "replace", lambda self, target: (_ for _ in ()).throw(OSError("crash")))
        with pytest.raises(OSError, match="crash"):
            store.rotate_key()
    new_key = _pending(store).read_bytes()
    token = json.loads(store.store_path.read_text())["a"].encode()
    assert Fernet(new_key).decrypt(token) == b"alpha-value"
    return new_key


@pytest.mark.parametrize("operation", ["get", "names", "set", "delete", "rotate"])
def test_rotation_crash_before_the_key_moves_is_recovered_on_any_access(store, monkeypatch, operation):
    store.set("a", "alpha-value")
    store.set("b", "beta-value")
    new_key = _crash_before_the_key_moves(store, monkeypatch)
    with pytest.raises(InvalidToken):  # the old key alone no longer opens the store
        Fernet(store.key_path.read_bytes()).decrypt(json.loads(store.store_path.read_text())["a"].encode())
    reopened = CredentialStore(store.directory)
    {
        "get": lambda: reopened.get("b"),
        "names": reopened.names,
        "set": lambda: reopened.set("c", "gamma-value"),
        "delete": lambda: reopened.delete("b"),
        "rotate": reopened.rotate_key,
    }[operation]()
    assert not _pending(reopened).exists()
    if operation != "rotate":
        assert reopened.key_path.read_bytes() == new_key
    assert stat.S_IMODE(reopened.key_path.stat().st_mode) == 0o600
    assert reopened.get("a") == "alpha-value"


def test_rotation_crash_with_the_key_in_env_adopts_the_pending_key_and_says_to_update_env(store, monkeypatch, caplog):
    old_key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, old_key)
    store.set("a", "alpha-value")
    new_key = _crash_before_the_key_moves(store, monkeypatch)
    with caplog.at_level("WARNING", logger="mlconnector.credentials"):
        assert store.get("a") == "alpha-value"
    assert store.key_path.read_bytes() == new_key and not _pending(store).exists()
    assert f"${KEY_ENV} still holds the old key: set it to the content of {store.key_path}" in caplog.text
    assert old_key not in caplog.text and new_key.decode() not in caplog.text
    with pytest.raises(
        CredentialError,
        match=rf"after `mlconnector credentials rotate-key` that is the content of "
        rf"{store.key_path}",
    ):
        store.get("a")  # the env var still wins, and still holds the old key
    monkeypatch.setenv(KEY_ENV, new_key.decode())
    assert store.get("a") == "alpha-value"


def test_pending_key_that_does_not_open_the_store_is_left_alone(store, monkeypatch):
    store.set("a", "alpha-value")
    before = store.store_path.read_bytes()
    _replace_key_file(store)
    _pending(store).write_bytes(Fernet.generate_key())
    os.chmod(_pending(store), 0o600)
    pending = _pending(store).read_bytes()
    with pytest.raises(CredentialError, match="cannot be decrypted with the current key"):
        store.get("a")
    with pytest.raises(CredentialError, match="nothing was written"):
        store.set("b", "beta-value")
    assert _pending(store).read_bytes() == pending and store.store_path.read_bytes() == before
