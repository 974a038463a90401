"""Signed notes and checkpoints (domain/signed_notes.py, domain/checkpoints.py).

Published vectors, copied verbatim from golang.org/x/mod ``sumdb/note/note_test.go``
(github.com/golang/mod, commit 02c991387e35f9e4c0a9b7ce137717055f8d716d): the PeterNeumann
and EnochRoot verifier keys, PeterNeumann's private key, the note text, and both keys'
signatures over it. Ed25519 is deterministic, so signing that text with that key must give
that exact signed note. The checkpoint layout follows c2sp.org/tlog-checkpoint's example.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.checkpoints import (
    Checkpoint,
    format_checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from domain.ledger_errors import (
    BadSignatureError,
    CheckpointOriginError,
    MalformedCheckpointError,
    MalformedNoteError,
    MalformedVerifierKeyError,
    UnverifiedNoteError,
)
from domain.merkle import EMPTY_ROOT
from domain.signed_notes import (
    NoteSignature,
    NoteVerifier,
    add_signature,
    open_note,
    parse_note,
    sign_note,
)

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
    "ngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGw"
    "nWLox33WWd1RvMc+QQ=\n"
)


def peter_private_key() -> Ed25519PrivateKey:
    # The Go private key string: PRIVATE+KEY+<name>+<key ID>+base64(0x01 || seed).
    typed = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert typed[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(typed[1:])


PETER = NoteVerifier.parse(PETER_VKEY)
ENOCH = NoteVerifier.parse(ENOCH_VKEY)


# --- verifier keys --------------------------------------------------------------------
def test_verifier_keys_parse_and_print_back() -> None:
    assert PETER.name == "PeterNeumann"
    assert PETER.key_id == bytes.fromhex("c74f20a3")
    assert str(PETER) == PETER_VKEY
    assert str(ENOCH) == ENOCH_VKEY


def test_the_key_id_is_computed_as_the_specification_says() -> None:
    key = peter_private_key().public_key()
    assert NoteVerifier.of("PeterNeumann", key) == PETER


def test_mangled_verifier_keys_are_refused() -> None:
    # TestNewVerifier: every proper substring, every byte incremented, two adjusted keys.
    b = PETER_VKEY.encode()
    bad = {b[i:j] for i in range(len(b) + 1) for j in range(i + 1, len(b) + 1)} - {b}
    bad |= {b[:i] + bytes([b[i] + 1]) + b[i + 1 :] for i in range(len(b))}
    bad |= {
        b"PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        b"PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    }
    for vkey in bad:
        with pytest.raises(MalformedVerifierKeyError):
            NoteVerifier.parse(vkey.decode("utf-8", "replace"))


# --- signing and verifying --------------------------------------------------------------
def test_signing_reproduces_the_published_note() -> None:
    assert sign_note(TEXT, "PeterNeumann", peter_private_key()) == TEXT + "\n" + PETER_SIG


def test_one_known_signer_verifies_and_unknown_signers_are_ignored() -> None:
    opened = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert opened.text == TEXT
    assert [s.name for s in opened.verified] == ["PeterNeumann"]
    assert [(s.name, s.key_id.hex()) for s in opened.unverified] == [("EnochRoot", "af0cfe78")]
    both = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER, ENOCH])
    assert [s.name for s in both.verified] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified == ()


def test_a_note_with_no_known_signer_is_rejected() -> None:
    with pytest.raises(UnverifiedNoteError):
        open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [])
    with pytest.raises(UnverifiedNoteError):
        # Same name, other key ID; same key ID, other name: both unknown.
        other = NoteVerifier("PeterNeumann", bytes.fromhex("c74f20a4"), PETER.public_key)
        renamed = NoteVerifier("PeterNeuman", PETER.key_id, PETER.public_key)
        open_note(TEXT + "\n" + PETER_SIG, [other, renamed])


def test_a_bad_signature_from_a_known_key_rejects_the_note() -> None:
    with pytest.raises(BadSignatureError):
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], [PETER])
    with pytest.raises(BadSignatureError):
        open_note(TEXT.replace("you", "we", 1) + "\n" + PETER_SIG, [PETER])


def test_repeated_signatures_count_once() -> None:
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    note = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = open_note(note, [PETER])
    assert len(opened.verified) == 1
    assert len(opened.unverified) == 2


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
        TEXT
        + "\n"
        + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
        "ngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * 101,
        TEXT + "\n" + "- PeterNeumann x08go/ZJkuBS9UG/Sffc=\n",  # a hyphen, not an em dash
    ],
)
def test_malformed_notes_are_refused(note: str | bytes) -> None:
    with pytest.raises(MalformedNoteError):
        open_note(note, [PETER])


def test_a_cosignature_adds_a_line_and_both_verify() -> None:
    witness = Ed25519PrivateKey.generate()
    witness_key = NoteVerifier.of("witness.example/w1", witness.public_key())
    signed = sign_note(TEXT, "PeterNeumann", peter_private_key())
    cosigned = add_signature(signed, "witness.example/w1", witness)
    assert cosigned.startswith(signed)
    assert [s.name for s in open_note(cosigned, [PETER, witness_key]).verified] == [
        "PeterNeumann",
        "witness.example/w1",
    ]
    assert [s.name for s in open_note(cosigned, [witness_key]).verified] == ["witness.example/w1"]
    # Cosigning again replaces the witness's own line.
    assert parse_note(add_signature(cosigned, "witness.example/w1", witness)) == parse_note(
        cosigned
    )


def test_conflicting_verifiers_are_refused() -> None:
    clash = NoteVerifier(PETER.name, PETER.key_id, ENOCH.public_key)
    with pytest.raises(MalformedVerifierKeyError):
        open_note(TEXT + "\n" + PETER_SIG, [PETER, clash])


def test_signature_lines_round_trip() -> None:
    note = parse_note(TEXT + "\n" + PETER_SIG)
    assert note.signatures[0] == NoteSignature(
        "PeterNeumann", PETER.key_id, note.signatures[0].signature
    )
    assert str(note) == TEXT + "\n" + PETER_SIG


# --- checkpoints ---------------------------------------------------------------------
ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_the_checkpoint_body_is_the_c2sp_layout() -> None:
    cp = Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)
    assert format_checkpoint(cp) == BODY
    assert parse_checkpoint(BODY) == cp
    with_ext = Checkpoint("o", 0, EMPTY_ROOT, ("ext one",))
    assert parse_checkpoint(format_checkpoint(with_ext)) == with_ext
    assert format_checkpoint(with_ext).splitlines()[1:] == [
        "0",
        "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "ext one",
    ]


@pytest.mark.parametrize(
    "body",
    [
        "",
        "o\n1\n",
        "o\n1\n" + base64.b64encode(ROOT).decode(),  # no final newline
        "\n1\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n01\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n+1\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n1_0\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n\u0661\n" + base64.b64encode(ROOT).decode() + "\n",  # an Arabic-Indic one
        "o\n-1\n" + base64.b64encode(ROOT).decode() + "\n",
        f"o\n{2**64}\n" + base64.b64encode(ROOT).decode() + "\n",
        "o\n1\n" + base64.b64encode(ROOT[:31]).decode() + "\n",
        "o\n1\n" + base64.b64encode(ROOT).decode().rstrip("=") + "\n",
        "o\n1\n" + base64.b64encode(ROOT).decode() + "\n\n",
        "o\n1\n" + base64.urlsafe_b64encode(b"\xff" * 32).decode() + "\n",
    ],
)
def test_malformed_checkpoint_bodies_are_refused(body: str) -> None:
    with pytest.raises(MalformedCheckpointError):
        parse_checkpoint(body)


def test_a_signed_checkpoint_opens_with_the_log_key_and_checks_the_origin() -> None:
    key = Ed25519PrivateKey.generate()
    log = NoteVerifier.of("keyledger.example/prod", key.public_key())
    cp = Checkpoint("keyledger.example/prod", 42, ROOT)
    note = sign_checkpoint(cp, key)
    assert note.startswith(format_checkpoint(cp) + "\n— keyledger.example/prod ")
    opened, verified = open_checkpoint(note, [log], origin="keyledger.example/prod")
    assert opened == cp
    assert verified.verified[0].key_id == log.key_id
    with pytest.raises(CheckpointOriginError):
        open_checkpoint(note, [log], origin="keyledger.example/other")
    other = NoteVerifier.of("keyledger.example/prod", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(note, [other])  # re-signed with another key: its ID is unknown
    tampered = note.replace("\n42\n", "\n43\n")
    with pytest.raises(BadSignatureError):
        open_checkpoint(tampered, [log])


def test_a_signed_note_that_is_not_a_checkpoint_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    note = sign_note("just text\n", "keyledger.example/prod", key)
    with pytest.raises(MalformedCheckpointError):
        open_checkpoint(note, [NoteVerifier.of("keyledger.example/prod", key.public_key())])
