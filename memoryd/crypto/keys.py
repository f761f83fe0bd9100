"""The data key (DEK) and the key file that holds it.

A memoryd home has one random 32-byte data key. Every secret the daemon uses is derived
from it with HKDF-SHA256 under a purpose label (:func:`derive`), so a DuckDB key, the SAP
vector cipher and the namespace tags can never be confused with one another.

The DEK lives in ``<config>/key.json`` (mode 0600) in one of two forms:

* ``plain``: the DEK itself, base64. The zero-prompt default.
* ``passphrase``: the DEK wrapped with AES-256-GCM under a key-encryption key derived from
  the passphrase by scrypt. The associated data binds the version, kind, cipher and KDF
  parameters, so editing any of them makes the unwrap fail instead of silently weakening it.

The fingerprint is a one-way function of the DEK: it stays the same when the key file is
re-wrapped and is safe to show in logs and the CLI. Neither the DEK nor a passphrase ever
appears in an exception message, a log line or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import hmac
import json
import os
import secrets
import stat
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from memoryd.errors import BadPassphrase, InvalidParams, KeyProblem, Locked

KEY_BYTES = 32
KEY_FILE_VERSION = 1
PLAIN = "plain"
PASSPHRASE = "passphrase"
WRAP_CIPHER = "aes-256-gcm"

DEFAULT_SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
# Below 2**14 a passphrase guess costs almost nothing. Above 2**20 (1 GiB of memory at r=8) a
# damaged or hostile key file could exhaust memory before the GCM tag check gets to refuse it.
MIN_SCRYPT_N = 2**14
MAX_SCRYPT_N = 2**20
_MAX_SCRYPT_MEMORY = 2**30
SALT_BYTES = 16
NONCE_BYTES = 12
_MAX_KEY_FILE_BYTES = 64 * 1024
_AAD_LABEL = b"memoryd key file\n"


def generate_data_key() -> bytes:
    """A fresh random data key."""
    return secrets.token_bytes(KEY_BYTES)


def derive(dek: bytes, purpose: str, length: int = 32) -> bytes:
    """A subkey of ``dek`` for one purpose (HKDF-SHA256, info ``b"memoryd/" + purpose``).

    Purposes in use: ``duckdb``, ``sap-scale``, ``sap-prf``, ``sap-rotation``,
    ``exact-copy``, ``namespace-tag``, ``fingerprint``. A new use of the key gets a new
    purpose, never a reused one.
    """
    _check_dek(dek)
    if not purpose:
        raise ValueError("purpose must not be empty")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=None,
        info=b"memoryd/" + purpose.encode("utf-8"),
    )
    return hkdf.derive(dek)


def duckdb_key(dek: bytes) -> str:
    """The string for DuckDB's ``ATTACH ... (ENCRYPTION_KEY '<key>')``.

    Standard base64 of a derived key: only ``A-Za-z0-9+/=``, so it can sit inside a SQL
    string literal without escaping.
    """
    return base64.b64encode(derive(dek, "duckdb")).decode("ascii")


def fingerprint(dek: bytes) -> str:
    """16 hex characters that tell keys apart without revealing anything useful about them."""
    return derive(dek, "fingerprint")[:8].hex()


def namespace_tag(dek: bytes, namespace: str) -> str:
    """A keyed pseudonym for a namespace name, stored beside encrypted vectors.

    It lets the vector index prefilter by namespace without holding the name. 64 bits:
    distinct namespaces collide with negligible probability, and search re-checks the real
    namespace in DuckDB anyway.
    """
    tag_key = derive(dek, "namespace-tag")
    return hmac.new(tag_key, namespace.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


@dataclass
class KeyFile:
    """A parsed, structurally checked key file. ``raw`` is the JSON object as read."""

    path: Path
    kind: str
    # Kept out of repr: for a plain key file it holds the data key.
    raw: dict[str, Any] = field(repr=False)

    @property
    def protected(self) -> bool:
        return self.kind == PASSPHRASE

    @property
    def fingerprint(self) -> str:
        return str(self.raw["fingerprint"])


def read_key_file(path: str | os.PathLike[str]) -> KeyFile | None:
    """The key file at ``path``, or None if there is none.

    Raises KeyProblem if it cannot be read, is damaged, is of an unknown version or kind,
    or if other users could read it (the message says which chmod fixes that).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyProblem(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        # fstat on the open descriptor: the mode checked is the mode of the bytes read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyProblem(f"key file {path} is not a regular file")
        if st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise KeyProblem(
                f"key file {path} is accessible to other users (mode {mode:04o}); "
                f"fix with: chmod 600 {path}"
            )
        if st.st_size > _MAX_KEY_FILE_BYTES:
            raise KeyProblem(f"key file {path} is damaged: too large to be a key file")
        data = _read_all(fd)
    except OSError as exc:
        raise KeyProblem(f"cannot read key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyProblem(f"key file {path} is damaged: not valid JSON") from None
    if not isinstance(raw, dict):
        raise KeyProblem(f"key file {path} is damaged: not a JSON object")
    keyfile = KeyFile(path=path, kind=str(raw.get("kind")), raw=raw)
    _parse(keyfile)
    return keyfile


def create_key_file(path: str | os.PathLike[str]) -> bytes:
    """Write a new plain key file at ``path`` and return its fresh data key.

    Refuses if a key file already exists there: it may hold the only copy of a data key.
    """
    path = Path(path)
    if os.path.lexists(path):
        raise KeyProblem(_exists_message(path))
    dek = generate_data_key()
    _write_key_file(path, _plain_document(dek, _now()), replace=False)
    return dek


def unlock(keyfile: KeyFile, passphrase: str | None) -> bytes:
    """The data key held by ``keyfile``.

    A plain key file ignores ``passphrase``. A protected one raises Locked without a
    passphrase and BadPassphrase with a wrong one (or if its wrapped key or KDF parameters
    were altered: AES-GCM cannot tell those apart).
    """
    fields = _parse(keyfile)
    dek: bytes
    if keyfile.kind == PLAIN:
        dek = fields["key"]
    else:
        if not passphrase:
            raise Locked(
                "the data key is protected by a passphrase; unlock it with `memory unlock`"
            )
        kek = _scrypt(passphrase, fields["salt"], fields["n"], fields["r"], fields["p"])
        try:
            dek = AESGCM(kek).decrypt(fields["nonce"], fields["wrapped"], _aad(keyfile.raw))
        except InvalidTag:
            raise BadPassphrase("wrong passphrase") from None
        if len(dek) != KEY_BYTES:
            raise KeyProblem(f"key file {keyfile.path} is damaged: wrapped key has the wrong size")
    if not hmac.compare_digest(fingerprint(dek), keyfile.fingerprint):
        raise KeyProblem(
            f"key file {keyfile.path} is damaged: its fingerprint does not match its key"
        )
    return dek


def set_passphrase(
    path: str | os.PathLike[str], dek: bytes, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N
) -> None:
    """Rewrite the key file at ``path`` with ``dek`` wrapped under ``passphrase``.

    Also re-wraps an already protected key under a new passphrase, and may create the file
    (so a new home can be protected without a plain key ever touching the disk).
    """
    _check_dek(dek)
    if not isinstance(passphrase, str) or not passphrase:
        raise InvalidParams("the passphrase must not be empty")
    if not _valid_scrypt(scrypt_n, SCRYPT_R, SCRYPT_P):
        raise ValueError(f"scrypt_n must be a power of two in [{MIN_SCRYPT_N}, {MAX_SCRYPT_N}]")
    path = Path(path)
    created_at = _replaceable_created_at(path, dek)
    salt = secrets.token_bytes(SALT_BYTES)
    nonce = secrets.token_bytes(NONCE_BYTES)
    document: dict[str, Any] = {
        "version": KEY_FILE_VERSION,
        "kind": PASSPHRASE,
        "kdf": {"name": "scrypt", "salt": _b64(salt), "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P},
        "cipher": WRAP_CIPHER,
        "nonce": _b64(nonce),
        "wrapped": "",
        "fingerprint": fingerprint(dek),
        "created_at": created_at,
    }
    kek = _scrypt(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    document["wrapped"] = _b64(AESGCM(kek).encrypt(nonce, dek, _aad(document)))
    _write_key_file(path, document, replace=True)


def remove_passphrase(path: str | os.PathLike[str], dek: bytes) -> None:
    """Rewrite the key file at ``path`` as a plain key file holding ``dek``."""
    _check_dek(dek)
    path = Path(path)
    created_at = _replaceable_created_at(path, dek)
    _write_key_file(path, _plain_document(dek, created_at), replace=True)


# --- parsing -------------------------------------------------------------------------------


def _parse(keyfile: KeyFile) -> dict[str, Any]:
    """Check the structure of a key file and decode its binary fields."""
    raw, path = keyfile.raw, keyfile.path
    version = raw.get("version")
    if type(version) is not int:
        raise KeyProblem(f"key file {path} is damaged: no valid version")
    if version != KEY_FILE_VERSION:
        raise KeyProblem(
            f"key file {path} has version {version}; this memoryd reads version {KEY_FILE_VERSION}"
        )
    kind = raw.get("kind")
    if kind != keyfile.kind or kind not in (PLAIN, PASSPHRASE):
        raise KeyProblem(f"key file {path} has unknown kind {_short(kind)}")
    fp = raw.get("fingerprint")
    if not (isinstance(fp, str) and len(fp) == 16 and all(ch in "0123456789abcdef" for ch in fp)):
        raise KeyProblem(f"key file {path} is damaged: no valid fingerprint")
    if kind == PLAIN:
        return {"key": _b64_field(raw, "key", path, KEY_BYTES)}
    if raw.get("cipher") != WRAP_CIPHER:
        raise KeyProblem(f"key file {path} uses unknown cipher {_short(raw.get('cipher'))}")
    kdf = raw.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise KeyProblem(f"key file {path} is damaged: kdf must be scrypt")
    n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
    if not _valid_scrypt(n, r, p):
        raise KeyProblem(f"key file {path} is damaged: scrypt parameters out of range")
    salt = _b64_field(kdf, "salt", path, None)
    if len(salt) < SALT_BYTES:
        raise KeyProblem(f"key file {path} is damaged: scrypt salt too short")
    return {
        "salt": salt,
        "n": n,
        "r": r,
        "p": p,
        "nonce": _b64_field(raw, "nonce", path, NONCE_BYTES),
        # 32 key bytes plus the 16-byte GCM tag.
        "wrapped": _b64_field(raw, "wrapped", path, KEY_BYTES + 16),
    }


def _valid_scrypt(n: object, r: object, p: object) -> bool:
    if type(n) is not int or type(r) is not int or type(p) is not int:
        return False
    return (
        MIN_SCRYPT_N <= n <= MAX_SCRYPT_N
        and n & (n - 1) == 0
        and 1 <= r <= 32
        and 1 <= p <= 16
        and 128 * n * r <= _MAX_SCRYPT_MEMORY
    )


def _b64_field(obj: dict[str, Any], name: str, path: Path, size: int | None) -> bytes:
    value = obj.get(name)
    if not isinstance(value, str):
        raise KeyProblem(f"key file {path} is damaged: {name} is missing")
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise KeyProblem(f"key file {path} is damaged: {name} is not valid base64") from None
    if size is not None and len(decoded) != size:
        raise KeyProblem(f"key file {path} is damaged: {name} has the wrong size")
    return decoded


def _aad(document: dict[str, Any]) -> bytes:
    """Associated data for the wrap: every field that says how to unwrap."""
    kdf = document["kdf"]
    bound = {
        "version": document["version"],
        "kind": document["kind"],
        "cipher": document["cipher"],
        "kdf": {
            "name": kdf["name"],
            "salt": kdf["salt"],
            "n": kdf["n"],
            "r": kdf["r"],
            "p": kdf["p"],
        },
    }
    return _AAD_LABEL + json.dumps(bound, sort_keys=True, separators=(",", ":")).encode("ascii")


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # NFC so the same passphrase typed on macOS (which tends to decompose accents) and on
    # Linux unlocks the same key.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret)


# --- writing -------------------------------------------------------------------------------


def _plain_document(dek: bytes, created_at: str) -> dict[str, Any]:
    return {
        "version": KEY_FILE_VERSION,
        "kind": PLAIN,
        "key": _b64(dek),
        "fingerprint": fingerprint(dek),
        "created_at": created_at,
    }


def _replaceable_created_at(path: Path, dek: bytes) -> str:
    """The creation time to keep when rewriting ``path``; refuses to replace another key.

    Overwriting a key file that holds a different data key would orphan every database
    that key opens. A damaged or over-permissive file is replaced (the caller holds the
    key, so this is a repair) and gets a new creation time.
    """
    try:
        existing = read_key_file(path)
    except KeyProblem:
        return _now()
    if existing is None:
        return _now()
    if existing.fingerprint != fingerprint(dek):
        raise KeyProblem(
            f"refusing to rewrite key file {path}: it holds a different key "
            f"(fingerprint {existing.fingerprint}, not {fingerprint(dek)})"
        )
    created_at = existing.raw.get("created_at")
    return created_at if isinstance(created_at, str) else _now()


def _write_key_file(path: Path, document: dict[str, Any], *, replace: bool) -> None:
    data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    try:
        _ensure_private_dir(path.parent)
        _write_atomic(path, data, replace=replace)
    except OSError as exc:
        raise KeyProblem(f"cannot write key file {path}: {exc.strerror}") from None


def _ensure_private_dir(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        # An existing directory is the user's to arrange; only one we create is tightened.
        return
    # mkdir's mode is filtered by the umask; set it exactly.
    os.chmod(directory, 0o700)


def _write_atomic(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file is created 0600 with O_EXCL in the same directory, so the key is
    never readable by others, not even briefly, and the final rename stays on one filesystem.
    """
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    finally:
        # After a rename the temporary name is gone; after a link or a failure it is not.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    _fsync_dir(path.parent)


def _link_no_clobber(tmp: Path, path: Path) -> None:
    # link() fails if the target exists, so two processes creating a key at once cannot
    # overwrite each other's key: exactly one wins and the other is refused.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KeyProblem(_exists_message(path)) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # Filesystems without hard links: fall back to check-then-rename.
        if os.path.lexists(path):
            raise KeyProblem(_exists_message(path)) from None
        os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems cannot fsync a directory; the rename itself has happened.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


# --- small helpers -------------------------------------------------------------------------


def _check_dek(dek: bytes) -> None:
    if not isinstance(dek, bytes | bytearray) or len(dek) != KEY_BYTES:
        raise ValueError(f"a data key is {KEY_BYTES} bytes")


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _exists_message(path: Path) -> str:
    return (
        f"key file {path} already exists; refusing to replace it "
        "(it may hold the only copy of your data key)"
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
