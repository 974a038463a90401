"""Signed notes (c2sp.org/signed-note) with Ed25519 signatures, and verifier keys.

A signed note is UTF-8 text with no ASCII control characters but newline::

    <text: one or more lines, each ending in "\\n">
    <blank line>
    — <key name> <base64(key ID (4 bytes, big-endian) || signature)>\\n   (one or more)

The signature line starts with U+2014 (em dash, 3 bytes in UTF-8) and a space. The signed
message is the text including its final newline, without the blank line; the text is
separated from the signatures by the *last* blank line. Key names are non-empty and hold
no Unicode space and no ``+``. For Ed25519 (signature type 0x01) the signature is RFC 8032
over the text, and the key ID is::

    key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]

A verifier key is written ``<name>+<key ID, 8 hex digits>+<base64(0x01 || public key)>``
(golang.org/x/mod/sumdb/note's convention); parsing rechecks the key ID.

Verification (`open_note`) follows the specification and the Go implementation: a
signature whose (name, key ID) is not a known key is ignored (kept as unverified); one
from a known key must verify, or the whole note is rejected (`BadSignatureError`); a note
with no signature from a known key is rejected (`UnverifiedNoteError`). Witness
cosignatures made as further Ed25519 note signatures (`add_signature`) verify the same way.
Standard, padded base64 (RFC 4648 §4) throughout.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from domain.ledger_errors import (
    BadSignatureError,
    MalformedNoteError,
    MalformedVerifierKeyError,
    UnverifiedNoteError,
)

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "
MAX_SIGNATURES = 100  # the specification asks verifiers to accept at least 16
_ED25519_SIGNATURE_SIZE = 64
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def is_valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNoteError(f"{what} is not valid UTF-8") from exc
    if _CONTROL.search(text):
        raise MalformedNoteError(f"{what} holds an ASCII control character")


def key_id(name: str, typed_public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || signature type || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + typed_public_key).digest()[:4]


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A known Ed25519 key: its name, its 4-byte key ID and its public key."""

    name: str
    key_id: bytes
    public_key: bytes  # the 32 raw bytes

    @classmethod
    def of(cls, name: str, public_key: Ed25519PublicKey | bytes) -> NoteVerifier:
        if not is_valid_key_name(name):
            raise MalformedVerifierKeyError(f"{name!r} is not a key name")
        raw = public_key if isinstance(public_key, bytes) else _raw(public_key)
        if len(raw) != 32:
            raise MalformedVerifierKeyError("an Ed25519 public key is 32 bytes")
        return cls(name, key_id(name, bytes([ED25519]) + raw), raw)

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """A verifier key string, ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        parts = vkey.split("+", 2)  # the base64 may hold '+'
        if len(parts) != 3:
            raise MalformedVerifierKeyError("a verifier key is <name>+<key ID>+<key>")
        name, hex_id, b64 = parts
        if not is_valid_key_name(name) or not _KEY_ID_HEX.fullmatch(hex_id):
            raise MalformedVerifierKeyError("a verifier key is <name>+<key ID>+<key>")
        try:
            typed = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedVerifierKeyError("the key of a verifier key is not base64") from exc
        if not typed or key_id(name, typed) != bytes.fromhex(hex_id):
            raise MalformedVerifierKeyError("the key ID of a verifier key does not match its key")
        if typed[0] != ED25519:
            raise MalformedVerifierKeyError(f"signature type {typed[0]:#04x} is not Ed25519")
        if len(typed) != 33:
            raise MalformedVerifierKeyError("an Ed25519 public key is 32 bytes")
        return cls(name, bytes.fromhex(hex_id), typed[1:])

    def __str__(self) -> str:
        typed = base64.b64encode(bytes([ED25519]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{typed}"

    def verifies(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: the key name, the key ID and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        b64 = base64.b64encode(self.key_id + self.signature).decode("ascii")
        return f"{SIGNATURE_PREFIX}{self.name} {b64}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A note as written: its text (with the final newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __str__(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """A note with at least one verified signature; the others were from unknown keys."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def parse_note(note: str | bytes) -> Note:
    """The text and signature lines of a signed note (syntax only, nothing verified)."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError("a note is not valid UTF-8") from exc
    _check_text(note, "the note")
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("a note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNoteError("a note ends in signature lines, each ending in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"a note has more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise MalformedNoteError("a signature line starts with an em dash and a space")
    name, _, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not is_valid_key_name(name):
        raise MalformedNoteError(f"{name!r} is not a key name")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedNoteError("a signature is not base64") from exc
    if len(raw) < 5:
        raise MalformedNoteError("a signature is a key ID and at least one byte")
    return NoteSignature(name, raw[:4], raw[4:])


def _check_note_text(text: str) -> bytes:
    _check_text(text, "the note text")
    if not text.endswith("\n"):
        raise MalformedNoteError("a note text is non-empty and ends in a newline")
    return text.encode("utf-8")


def _sign(text: bytes, name: str, private_key: Ed25519PrivateKey) -> NoteSignature:
    verifier = NoteVerifier.of(name, private_key.public_key())
    return NoteSignature(name, verifier.key_id, private_key.sign(text))


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note of `text` with one Ed25519 signature by key `name`."""
    signature = _sign(_check_note_text(text), name, private_key)
    return str(Note(text, (signature,)))


def add_signature(note: str | bytes, name: str, private_key: Ed25519PrivateKey) -> str:
    """The note with one more signature (a cosignature); replaces this key's own, if any.

    Existing signatures are kept as they are, verified or not.
    """
    parsed = parse_note(note)
    signature = _sign(_check_note_text(parsed.text), name, private_key)
    others = tuple(
        s for s in parsed.signatures if (s.name, s.key_id) != (signature.name, signature.key_id)
    )
    return str(Note(parsed.text, (*others, signature)))


def open_note(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> VerifiedNote:
    """Verifies a signed note against known keys; see the module docstring for the rules."""
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        previous = known.setdefault((v.name, v.key_id), v)
        if previous != v:
            raise MalformedVerifierKeyError(f"two keys are {v.name}+{v.key_id.hex()}")
    parsed = parse_note(note)
    text = parsed.text.encode("utf-8")
    verified: dict[tuple[str, bytes], NoteSignature] = {}
    unverified: dict[NoteSignature, None] = {}
    for signature in parsed.signatures:
        ident = (signature.name, signature.key_id)
        verifier = known.get(ident)
        if verifier is None:
            unverified.setdefault(signature, None)
            continue
        if ident in verified:
            continue  # a repeated signature by one key counts once
        if not verifier.verifies(text, signature.signature):
            raise BadSignatureError(f"invalid signature for key {verifier.name}+{ident[1].hex()}")
        verified[ident] = signature
    if not verified:
        raise UnverifiedNoteError("the note has no signature from a known key")
    return VerifiedNote(parsed.text, tuple(verified.values()), tuple(unverified))
