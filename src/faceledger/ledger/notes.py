"""Signed checkpoint notes: the Ed25519 signing key, the public key, the note format.

A **checkpoint** commits to the first ``size`` entries of the ledger: their RFC 9162
Merkle root (see :mod:`faceledger.ledger.merkle`), the time it was made and the key that
signed it. It is written as a C2SP *signed note* holding a *tlog checkpoint*
(https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note), the format of Go's
transparency logs and Sigstore's Rekor, so that tools other than ours can read it::

    faceledger/3f0c9a1b2c3d4e5f                       origin: names the log (its key id)
    1042                                              tree size
    uP7x...Qk=                                        base64 of the 32-byte root hash
    Timestamp: 1764780000123456789                    extension line (Unix ns), as Rekor

    — faceledger/3f0c9a1b2c3d4e5f AbCdEf...==        base64(key hash[4] || Ed25519 sig)

The signature covers every byte above the blank line. The key hash is the first four
bytes of SHA-256(name || "\\n" || 0x01 || public key), 0x01 marking Ed25519.

The **signing key** is an Ed25519 private key (PKCS#8 PEM, mode 0600) in
``FACELEDGER_SIGNING_KEY_FILE`` (default ``DATA/ledger-signing.key``). Verifying needs
only the public key: a PEM ``PUBLIC KEY`` or a note verifier key
``<name>+<hex key hash>+<base64(0x01 || key)>``. Keep the private key on another volume
or in a secret store mounted read-only for the service: whoever holds it can sign a
rewritten history, so it must not sit beside the database it vouches for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from faceledger.errors import InvalidArgument, StoreError

SIGNING_KEY_FILE = "ledger-signing.key"
ED25519_TYPE = b"\x01"
_SIG_LINE = re.compile(r"^\u2014 (\S+) ([A-Za-z0-9+/=]+)$")


class CheckpointError(InvalidArgument):
    """A checkpoint is malformed or not signed by the expected key."""

    code = "invalid_checkpoint"


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 verifying key and the names derived from it."""

    key: Ed25519PublicKey

    @property
    def raw(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        """First 16 hex digits of SHA-256 of the raw 32-byte public key."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    @property
    def origin(self) -> str:
        """The checkpoint origin line, also the note key name: ``faceledger/<key id>``."""
        return f"faceledger/{self.key_id}"

    @property
    def note_key_hash(self) -> bytes:
        return hashlib.sha256(self.origin.encode() + b"\n" + ED25519_TYPE + self.raw).digest()[:4]

    @property
    def vkey(self) -> str:
        """The signed-note verifier key (``name+hash+base64``), as Go's ``note`` reads it."""
        encoded = base64.b64encode(ED25519_TYPE + self.raw).decode()
        return f"{self.origin}+{self.note_key_hash.hex()}+{encoded}"

    @property
    def pem(self) -> str:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """A public key from PEM or a note verifier key.

        Raises:
            InvalidArgument: neither form, or not an Ed25519 key.
        """
        text = text.strip()
        if text.startswith("-----BEGIN"):
            try:
                key = serialization.load_pem_public_key(text.encode())
            except ValueError as exc:  # cryptography reports bad PEM as ValueError
                raise InvalidArgument(f"not a PEM public key: {exc}") from exc
            if not isinstance(key, Ed25519PublicKey):
                raise InvalidArgument("the public key is not an Ed25519 key")
            return cls(key)
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise InvalidArgument("a public key is a PEM block or name+hash+base64 (note vkey)")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except binascii.Error as exc:
            raise InvalidArgument(f"bad base64 in the verifier key: {exc}") from exc
        if len(raw) != 33 or raw[:1] != ED25519_TYPE:
            raise InvalidArgument("the verifier key is not an Ed25519 key")
        public = cls(Ed25519PublicKey.from_public_bytes(raw[1:]))
        if public.origin != parts[0] or public.note_key_hash.hex() != parts[1]:
            raise InvalidArgument("the verifier key's name or hash does not match its key")
        return public


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A verified signed checkpoint: the ledger's first ``size`` entries have root ``root``."""

    origin: str
    size: int
    root: bytes
    timestamp_ns: int
    key_id: str
    note: str

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ns / 1e9, UTC)

    @property
    def root_hex(self) -> str:
        return self.root.hex()


class SigningKey:
    """The ledger's Ed25519 private key, loaded from (or created in) its file."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = PublicKey(key.public_key())

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKey:
        """The key in ``path``; a new one written there (mode 0600) if the file is absent.

        Raises:
            StoreError: the file cannot be read or is not an Ed25519 private key.
        """
        if not path.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it first: use theirs
                return cls.load_or_create(path)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
            return cls(key)
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(f"cannot read the ledger signing key {path}: {exc}") from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise StoreError(f"{path} does not hold an Ed25519 private key")
        return cls(loaded)

    def sign_checkpoint(self, size: int, root: bytes, *, timestamp_ns: int) -> Checkpoint:
        """A checkpoint of ``size`` entries with Merkle root ``root``, signed now."""
        body = (
            f"{self.public.origin}\n{size}\n{base64.b64encode(root).decode()}\n"
            f"Timestamp: {timestamp_ns}\n"
        )
        sig = self._key.sign(body.encode())
        line = base64.b64encode(self.public.note_key_hash + sig).decode()
        note = f"{body}\n\u2014 {self.public.origin} {line}\n"
        return Checkpoint(self.public.origin, size, root, timestamp_ns, self.public.key_id, note)


def read_checkpoint(note: str) -> Checkpoint:
    """The checkpoint a note states, WITHOUT checking its signature (see :func:`verify_note`).

    Raises:
        CheckpointError: not a signed checkpoint note.
    """
    body, sep, _ = note.partition("\n\n")
    lines = body.splitlines()
    if not sep or len(lines) < 3:
        raise CheckpointError("not a signed checkpoint: origin, size, root hash, blank line")
    origin, size_text, root_text = lines[:3]
    if not size_text.isdigit():
        raise CheckpointError(f"bad tree size {size_text!r}")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as exc:
        raise CheckpointError(f"bad root hash: {exc}") from exc
    if len(root) != 32:
        raise CheckpointError("the root hash is not 32 bytes")
    timestamp = 0
    for extra in lines[3:]:
        if extra.startswith("Timestamp: ") and extra[11:].isdigit():
            timestamp = int(extra[11:])
    key_id = origin.removeprefix("faceledger/")
    return Checkpoint(origin, int(size_text), root, timestamp, key_id, note)


def verify_note(note: str, public: PublicKey) -> Checkpoint:
    """Check a signed checkpoint note against ``public``; the checkpoint it states.

    Raises:
        CheckpointError: malformed, another log's, or its signature does not verify.
    """
    cp = read_checkpoint(note)
    if cp.origin != public.origin:
        raise CheckpointError(f"checkpoint of log {cp.origin!r}, not of {public.origin!r}")
    body, _, signatures = note.partition("\n\n")
    signed = (body + "\n").encode()
    for sig_line in signatures.splitlines():
        match = _SIG_LINE.match(sig_line)
        if match is None or match[1] != public.origin:
            continue
        raw = base64.b64decode(match[2])
        if raw[:4] != public.note_key_hash:
            continue
        try:
            public.key.verify(raw[4:], signed)
        except InvalidSignature:
            raise CheckpointError(f"bad signature on the checkpoint of size {cp.size}") from None
        return cp
    raise CheckpointError(f"the checkpoint of size {cp.size} has no signature by {cp.origin}")
