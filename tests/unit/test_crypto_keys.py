"""The data key and its key file: real scrypt, real AES-GCM, real files."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from memoryd.crypto import keys
from memoryd.errors import BadPassphrase, InvalidParams, KeyProblem, Locked

FAST_N = 2**14  # the default 2**17 takes ~0.5 s per scrypt; one test below uses it.


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "key.json"


def rewrite(path: Path, change) -> None:
    """Edit the key file's JSON in place, keeping its mode."""
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def test_create_writes_private_plain_key_file(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)

    assert len(dek) == 32
    assert mode(key_path) == 0o600
    assert mode(key_path.parent) == 0o700
    raw = json.loads(key_path.read_text())
    assert raw["version"] == 1 and raw["kind"] == "plain"
    assert base64.b64decode(raw["key"]) == dek
    assert raw["fingerprint"] == keys.fingerprint(dek)
    assert raw["created_at"]
    # No temporary files left behind.
    assert [p.name for p in key_path.parent.iterdir()] == ["key.json"]


def test_create_keeps_mode_of_existing_directory(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    keys.create_key_file(tmp_path / "key.json")
    assert mode(tmp_path) == 0o755
    assert mode(tmp_path / "key.json") == 0o600


def test_create_refuses_existing_file(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)
    before = key_path.read_bytes()

    with pytest.raises(KeyProblem, match="already exists"):
        keys.create_key_file(key_path)

    assert key_path.read_bytes() == before
    assert keys.unlock(keys.read_key_file(key_path), None) == dek


def test_read_missing_file_is_none(key_path: Path) -> None:
    assert keys.read_key_file(key_path) is None


def test_unlock_plain_ignores_passphrase(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)
    keyfile = keys.read_key_file(key_path)

    assert keyfile is not None and not keyfile.protected
    assert keyfile.fingerprint == keys.fingerprint(dek)
    assert keys.unlock(keyfile, None) == dek
    assert keys.unlock(keyfile, "anything") == dek


def test_keyfile_repr_does_not_show_the_key(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)
    text = repr(keys.read_key_file(key_path))
    assert base64.b64encode(dek).decode() not in text
    assert "raw" not in text


def test_set_passphrase_wraps_the_key(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)
    created_at = json.loads(key_path.read_text())["created_at"]

    keys.set_passphrase(key_path, dek, "correct horse", scrypt_n=FAST_N)

    data = key_path.read_bytes()
    assert dek not in data
    assert base64.b64encode(dek) not in data
    assert dek.hex().encode() not in data
    assert mode(key_path) == 0o600
    raw = json.loads(data)
    assert raw["kind"] == "passphrase" and "key" not in raw
    assert raw["kdf"] == {"name": "scrypt", "salt": raw["kdf"]["salt"], "n": FAST_N, "r": 8, "p": 1}
    assert raw["cipher"] == "aes-256-gcm"
    assert raw["created_at"] == created_at
    keyfile = keys.read_key_file(key_path)
    assert keyfile is not None and keyfile.protected
    assert keyfile.fingerprint == keys.fingerprint(dek)
    assert keys.unlock(keyfile, "correct horse") == dek


def test_wrong_passphrase_is_refused_and_file_unchanged(key_path: Path) -> None:
    dek = keys.generate_data_key()
    keys.set_passphrase(key_path, dek, "correct horse", scrypt_n=FAST_N)
    before = key_path.read_bytes()
    keyfile = keys.read_key_file(key_path)

    with pytest.raises(BadPassphrase, match="wrong passphrase") as caught:
        keys.unlock(keyfile, "battery staple")

    assert "battery" not in str(caught.value)
    assert key_path.read_bytes() == before
    assert keys.unlock(keyfile, "correct horse") == dek


@pytest.mark.parametrize("passphrase", [None, ""])
def test_protected_key_without_passphrase_is_locked(key_path: Path, passphrase) -> None:
    keys.set_passphrase(key_path, keys.generate_data_key(), "pw", scrypt_n=FAST_N)
    with pytest.raises(Locked):
        keys.unlock(keys.read_key_file(key_path), passphrase)


def test_passphrase_unicode_normalisation(key_path: Path) -> None:
    dek = keys.generate_data_key()
    keys.set_passphrase(key_path, dek, "caf\u00e9", scrypt_n=FAST_N)  # composed é
    assert keys.unlock(keys.read_key_file(key_path), "cafe\u0301") == dek  # decomposed é


def test_empty_passphrase_is_invalid(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)
    before = key_path.read_bytes()
    with pytest.raises(InvalidParams):
        keys.set_passphrase(key_path, dek, "", scrypt_n=FAST_N)
    assert key_path.read_bytes() == before


def flip_first_byte(value: str) -> str:
    data = bytearray(base64.b64decode(value))
    data[0] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


def _tamper_wrapped(raw: dict) -> None:
    raw["wrapped"] = flip_first_byte(raw["wrapped"])


def _tamper_nonce(raw: dict) -> None:
    raw["nonce"] = flip_first_byte(raw["nonce"])


def _tamper_salt(raw: dict) -> None:
    raw["kdf"]["salt"] = flip_first_byte(raw["kdf"]["salt"])


def _tamper_n(raw: dict) -> None:
    raw["kdf"]["n"] = FAST_N * 2


def _tamper_r(raw: dict) -> None:
    raw["kdf"]["r"] = 1


def _tamper_huge_n(raw: dict) -> None:
    raw["kdf"]["n"] = 2**30


def _tamper_kdf_name(raw: dict) -> None:
    raw["kdf"]["name"] = "pbkdf2"


def _tamper_cipher(raw: dict) -> None:
    raw["cipher"] = "aes-128-gcm"


def _tamper_fingerprint(raw: dict) -> None:
    raw["fingerprint"] = "0" * 16


def _tamper_wrapped_not_base64(raw: dict) -> None:
    raw["wrapped"] = "not base64!"


def _tamper_wrapped_truncated(raw: dict) -> None:
    raw["wrapped"] = base64.b64encode(base64.b64decode(raw["wrapped"])[:-1]).decode()


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_wrapped,
        _tamper_nonce,
        _tamper_salt,
        _tamper_n,
        _tamper_r,
        _tamper_huge_n,
        _tamper_kdf_name,
        _tamper_cipher,
        _tamper_fingerprint,
        _tamper_wrapped_not_base64,
        _tamper_wrapped_truncated,
    ],
)
def test_tampered_protected_key_file_is_refused(key_path: Path, tamper) -> None:
    keys.set_passphrase(key_path, keys.generate_data_key(), "pw", scrypt_n=FAST_N)
    rewrite(key_path, tamper)

    with pytest.raises((BadPassphrase, KeyProblem)):
        keyfile = keys.read_key_file(key_path)
        keys.unlock(keyfile, "pw")


def test_tampered_plain_key_is_refused(key_path: Path) -> None:
    keys.create_key_file(key_path)
    rewrite(key_path, lambda raw: raw.update(key=flip_first_byte(raw["key"])))
    with pytest.raises(KeyProblem, match="fingerprint does not match"):
        keys.unlock(keys.read_key_file(key_path), None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"version": 2, "kind": "plain"}', "version 2"),
        (b'{"version": "1", "kind": "plain"}', "no valid version"),
        (b'{"version": 1, "kind": "hsm", "fingerprint": "0000000000000000"}', "unknown kind"),
        (b'{"version": 1, "kind": "plain", "fingerprint": "0000000000000000"}', "key is missing"),
        (
            b'{"version": 1, "kind": "plain", "key": "AAAA", "fingerprint": "0000000000000000"}',
            "wrong size",
        ),
    ],
)
def test_damaged_key_file_is_refused_with_one_line(
    key_path: Path, content: bytes, message: str
) -> None:
    key_path.parent.mkdir(mode=0o700)
    key_path.write_bytes(content)
    key_path.chmod(0o600)

    with pytest.raises(KeyProblem, match=message) as caught:
        keys.read_key_file(key_path)

    assert "\n" not in str(caught.value)
    assert str(key_path) in str(caught.value)


@pytest.mark.parametrize("bad_mode", [0o640, 0o644, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(key_path: Path, bad_mode: int) -> None:
    keys.create_key_file(key_path)
    key_path.chmod(bad_mode)

    with pytest.raises(KeyProblem) as caught:
        keys.read_key_file(key_path)

    message = str(caught.value)
    assert f"{bad_mode:04o}" in message
    assert f"chmod 600 {key_path}" in message


def test_key_file_that_is_a_directory_is_refused(key_path: Path) -> None:
    key_path.mkdir(parents=True, mode=0o700)
    with pytest.raises(KeyProblem, match="not a regular file"):
        keys.read_key_file(key_path)


def test_rewrap_keeps_fingerprint_and_key(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)
    fp = keys.read_key_file(key_path).fingerprint

    keys.set_passphrase(key_path, dek, "first", scrypt_n=FAST_N)
    first = keys.read_key_file(key_path)
    keys.set_passphrase(key_path, dek, "second", scrypt_n=FAST_N)
    second = keys.read_key_file(key_path)

    assert first.fingerprint == second.fingerprint == fp
    assert first.raw["kdf"]["salt"] != second.raw["kdf"]["salt"]
    assert first.raw["nonce"] != second.raw["nonce"]
    with pytest.raises(BadPassphrase):
        keys.unlock(second, "first")
    assert keys.unlock(second, "second") == dek


def test_remove_passphrase_round_trip(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)
    keys.set_passphrase(key_path, dek, "pw", scrypt_n=FAST_N)

    keys.remove_passphrase(key_path, dek)

    keyfile = keys.read_key_file(key_path)
    assert keyfile.kind == "plain" and not keyfile.protected
    assert keys.unlock(keyfile, None) == dek
    assert keyfile.fingerprint == keys.fingerprint(dek)
    assert mode(key_path) == 0o600
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["key.json"]


def test_rewrite_refuses_a_file_holding_another_key(key_path: Path) -> None:
    keys.create_key_file(key_path)
    before = key_path.read_bytes()
    other = keys.generate_data_key()

    with pytest.raises(KeyProblem, match="different key"):
        keys.set_passphrase(key_path, other, "pw", scrypt_n=FAST_N)
    with pytest.raises(KeyProblem, match="different key"):
        keys.remove_passphrase(key_path, other)

    assert key_path.read_bytes() == before


def test_set_passphrase_can_create_the_file(key_path: Path) -> None:
    dek = keys.generate_data_key()
    keys.set_passphrase(key_path, dek, "pw", scrypt_n=FAST_N)
    assert mode(key_path.parent) == 0o700
    assert keys.unlock(keys.read_key_file(key_path), "pw") == dek


def test_set_passphrase_repairs_an_over_permissive_file(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)
    key_path.chmod(0o644)
    keys.set_passphrase(key_path, dek, "pw", scrypt_n=FAST_N)
    assert mode(key_path) == 0o600
    assert keys.unlock(keys.read_key_file(key_path), "pw") == dek


def test_scrypt_n_out_of_range_is_refused(key_path: Path) -> None:
    dek = keys.generate_data_key()
    for n in (2**10, 3 * 2**14, 2**21):
        with pytest.raises(ValueError):
            keys.set_passphrase(key_path, dek, "pw", scrypt_n=n)
    assert not key_path.exists()


def test_default_scrypt_parameters(key_path: Path) -> None:
    dek = keys.create_key_file(key_path)
    keys.set_passphrase(key_path, dek, "the default work factor")

    keyfile = keys.read_key_file(key_path)
    assert keyfile.raw["kdf"]["n"] == 2**17
    assert keys.unlock(keyfile, "the default work factor") == dek


def test_derive_is_deterministic_and_purpose_separated() -> None:
    dek = keys.generate_data_key()
    purposes = ["duckdb", "sap-scale", "sap-prf", "sap-perm", "namespace-tag", "fingerprint"]

    derived = {p: keys.derive(dek, p) for p in purposes}

    assert all(keys.derive(dek, p) == derived[p] for p in purposes)
    assert len(set(derived.values())) == len(purposes)
    assert all(len(v) == 32 for v in derived.values())
    assert dek not in derived.values()
    assert len(keys.derive(dek, "sap-scale", 8)) == 8
    assert keys.derive(keys.generate_data_key(), "duckdb") != derived["duckdb"]


def test_derive_known_answer() -> None:
    # Pins the derivation: if this changes, every existing database and vector index
    # becomes unreadable, so a change here must come with a migration. The duckdb value
    # was checked against RFC 5869 HKDF written out by hand with hmac (salt = 32 zero bytes).
    dek = bytes(range(32))
    assert keys.derive(dek, "duckdb").hex() == (
        "7bbc2f6d434b8bc930b5665ab64a1f5076aa3e87f3093e28867edf394015e3dd"
    )
    assert keys.fingerprint(dek) == "8cb2dc20da0a223c"
    assert keys.namespace_tag(dek, "default") == "c69db72ec6a41895"


def test_derive_rejects_bad_keys() -> None:
    with pytest.raises(ValueError):
        keys.derive(b"short", "duckdb")
    with pytest.raises(ValueError):
        keys.derive(keys.generate_data_key(), "")


def test_duckdb_key_is_a_safe_sql_literal() -> None:
    for _ in range(200):
        dek = keys.generate_data_key()
        key = keys.duckdb_key(dek)
        assert "'" not in key and '"' not in key and "\\" not in key and "\n" not in key
        assert base64.b64decode(key, validate=True) == keys.derive(dek, "duckdb")


def test_fingerprint_and_namespace_tag_shape() -> None:
    dek = keys.generate_data_key()
    fp = keys.fingerprint(dek)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == keys.fingerprint(dek)
    assert fp != keys.fingerprint(keys.generate_data_key())

    tag = keys.namespace_tag(dek, "work")
    assert len(tag) == 16 and int(tag, 16) >= 0
    assert tag == keys.namespace_tag(dek, "work")
    assert tag != keys.namespace_tag(dek, "home")
    assert tag != keys.namespace_tag(keys.generate_data_key(), "work")
    assert "work" not in tag


def test_files_created_under_permissive_umask_are_private(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        dek = keys.create_key_file(tmp_path / "new" / "key.json")
        keys.set_passphrase(tmp_path / "new" / "key.json", dek, "pw", scrypt_n=FAST_N)
    finally:
        os.umask(old)
    assert mode(tmp_path / "new") == 0o700
    assert mode(tmp_path / "new" / "key.json") == 0o600
