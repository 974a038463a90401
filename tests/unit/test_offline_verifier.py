"""The standalone offline verifier (tools/offline_verifier/keyledger_verify.py) is an
independent implementation: its RFC 9162 code meets transparency-dev's published vectors and
agrees with domain.merkle on any size; its signed-note code opens what domain.signed_notes
signs (and golang.org/x/mod's vectors); its leaf and eventID are the service's; it imports
nothing but the standard library and ``cryptography``. No database here."""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from app.entrypoints.cli.trail_digests import DigestSigner, write_digests
from domain.checkpoints import Checkpoint, sign_checkpoint
from domain.ledger_leaves import encode_leaf
from domain.merkle import MemoryTree, frontier_nodes
from domain.signed_notes import NoteVerifier, add_signature, sign_note
from projections.audit_trail import EVENT_ID_NAMESPACE
from tests.domain.test_merkle import (
    COMPACT_TREES,
    CONSISTENCY_PROOFS,
    INCLUSION_PROOFS,
    LEAF_INPUTS,
    ROOT_HASHES,
    SOME_HASH,
)
from tests.domain.test_signed_notes import ENOCH_SIG, ENOCH_VKEY, PETER_SIG, PETER_VKEY, TEXT
from tools.offline_verifier import keyledger_verify as kv

VERIFIER = Path(kv.__file__)


def _flip(hashes: list[bytes], i: int) -> list[bytes]:
    out = list(hashes)
    out[i] = bytes([out[i][0] ^ 1]) + out[i][1:]
    return out


def _leaves(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") + b"leaf" for i in range(n)]


# --- independence ----------------------------------------------------------------------------
def test_the_verifier_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(VERIFIER.read_text())
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, "no relative import"
            modules.add(node.module.split(".")[0])
    modules.discard("__future__")
    assert modules - set(sys.stdlib_module_names) == {"cryptography"}


def test_its_event_id_namespace_is_the_audit_trails() -> None:
    assert kv.EVENT_ID_NAMESPACE == EVENT_ID_NAMESPACE


# --- RFC 9162 against the published vectors ------------------------------------------------------
@pytest.mark.parametrize("size", range(9))
def test_roots_and_compact_ranges_match_the_published_vectors(size: int) -> None:
    frontier = kv.Frontier()
    for leaf in LEAF_INPUTS[:size]:
        frontier.append(kv.leaf_hash(leaf))
    assert frontier.hashes == COMPACT_TREES[size]
    assert frontier.root() == ROOT_HASHES[size]
    assert kv.Frontier(size, COMPACT_TREES[size]).root() == ROOT_HASHES[size]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_PROOFS)
def test_inclusion_proofs_of_the_published_vectors_verify(
    leaf: int, size: int, proof: list[bytes]
) -> None:
    lh = kv.leaf_hash(LEAF_INPUTS[leaf - 1])
    assert kv.root_from_inclusion(lh, leaf - 1, size, proof) == ROOT_HASHES[size]
    for j in range(len(proof)):
        assert kv.root_from_inclusion(lh, leaf - 1, size, _flip(proof, j)) != ROOT_HASHES[size]
    for bad in ([*proof, SOME_HASH], proof[:-1] if proof else [SOME_HASH]):
        with pytest.raises(ValueError):
            kv.root_from_inclusion(lh, leaf - 1, size, bad)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_PROOFS)
def test_consistency_proofs_of_the_published_vectors_verify(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    r1, r2 = ROOT_HASHES[size1], ROOT_HASHES[size2]
    assert kv.consistent(size1, size2, proof, r1, r2)
    probes = [(size1, size2, r1, r2, [*proof, r1])]
    if r1 != r2:
        probes.append((size1, size2, r2, r1, proof))
    probes += [(size1, size2, r1, r2, _flip(proof, j)) for j in range(len(proof))]
    if proof:
        probes += [(size1 + 1, size2, r1, r2, proof), (size1, size2, r1, r2, proof[:-1])]
    for s1, s2, a, b, bad in probes:
        assert not kv.consistent(s1, s2, bad, a, b)


@pytest.mark.parametrize(
    ("size1", "size2", "root1", "root2", "proof", "ok"),
    [
        (0, 0, kv.EMPTY_ROOT, kv.EMPTY_ROOT, [], True),
        (0, 1, kv.EMPTY_ROOT, SOME_HASH, [], True),
        (0, 1, SOME_HASH, SOME_HASH, [], False),
        (1, 1, SOME_HASH, SOME_HASH, [], True),
        (1, 0, SOME_HASH, kv.EMPTY_ROOT, [], False),
        (1, 2, SOME_HASH, kv.EMPTY_ROOT, [], False),
        (1, 1, kv.EMPTY_ROOT, kv.EMPTY_ROOT, [kv.EMPTY_ROOT], False),
    ],
)
def test_consistency_edge_cases_as_transparency_dev(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool
) -> None:
    assert kv.consistent(size1, size2, proof, root1, root2) is ok


# --- RFC 9162 against domain.merkle on any size ----------------------------------------------
@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_prefix_plus_leaves_gives_domain_roots_and_proofs_verify(args: tuple[int, int]) -> None:
    n, b = args
    d = _leaves(n)
    tree = MemoryTree()
    for leaf in d:
        tree.append_leaf(leaf)
    a = b // 3
    frontier = kv.Frontier(a, [tree.node(node) for node in frontier_nodes(a)])
    for leaf in d[a:b]:
        frontier.append(kv.leaf_hash(leaf))
    assert frontier.root() == tree.root(b)
    proof = tree.consistency_proof(b, n)
    assert kv.consistent(b, n, proof, tree.root(b), tree.root(n))
    if 0 < b < n:
        assert not kv.consistent(b, n, _flip(proof, len(proof) // 2), tree.root(b), tree.root(n))
        assert not kv.consistent(b, n, proof, SOME_HASH, tree.root(n))
    if b < n:
        assert kv.root_from_inclusion(kv.leaf_hash(d[b]), b, n, tree.inclusion_proof(b, n)) == (
            tree.root(n)
        )


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.uuids(),
    st.integers(0, 2**64 - 1),
    st.text(max_size=40),
    st.binary(min_size=32, max_size=32),
)
def test_the_leaf_is_the_services(
    position: int, originator: uuid.UUID, version: int, topic: str, state: bytes
) -> None:
    topic = topic.encode("utf-8", "ignore").decode()
    leaf = kv.Leaf(0, position, originator, version, topic, state)
    assert leaf.encode() == encode_leaf(position, originator, version, topic, state)


# --- signed notes ---------------------------------------------------------------------------
def test_it_opens_the_go_vectors_and_ignores_unpinned_signers() -> None:
    peter, enoch = kv.parse_public_key(PETER_VKEY), kv.parse_public_key(ENOCH_VKEY)
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert kv.open_note(note, [peter], "note") == (TEXT, peter)
    assert kv.open_note(note, [enoch], "note") == (TEXT, enoch)
    assert str(peter) == PETER_VKEY


def test_it_opens_what_domain_signs_and_names_each_failure() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    pinned = kv.parse_public_key(str(NoteVerifier.of("keyledger.test/log", key.public_key())))
    checkpoint = Checkpoint("keyledger.test/log", 5, SOME_HASH)
    note = sign_checkpoint(checkpoint, key)
    text, signer = kv.open_note(note, [pinned], "checkpoint")
    assert signer == pinned
    assert kv.parse_checkpoint(text) == kv.Checkpoint("keyledger.test/log", 5, SOME_HASH)
    cosigned = add_signature(note, "witness", other)
    assert kv.open_note(cosigned, [pinned], "checkpoint")[0] == text
    with pytest.raises(kv.Failure, match="checkpoint unsigned"):
        kv.open_note(sign_checkpoint(checkpoint, other), [pinned], "checkpoint")
    forged = note.replace("\n5\n", "\n6\n")
    with pytest.raises(kv.Failure, match="checkpoint signature invalid"):
        kv.open_note(forged, [pinned], "checkpoint")
    with pytest.raises(kv.Failure, match="checkpoint malformed"):
        kv.open_note(
            sign_note("no blank line follows\n", "x", key).replace("\n\n", "\n"), [], "checkpoint"
        )


def test_a_verifier_key_with_a_wrong_key_id_is_refused() -> None:
    name, _, b64 = PETER_VKEY.split("+", 2)
    with pytest.raises(ValueError, match="key ID"):
        kv.parse_public_key(f"{name}+00000000+{b64}")


# --- records to leaves ---------------------------------------------------------------------------
def test_each_copy_of_a_record_ties_to_its_leaf_and_recipient() -> None:
    leaf = kv.Leaf(7, 12, uuid.uuid4(), 3, "domain.keys:Key.Used", bytes(32))
    base = uuid.uuid5(EVENT_ID_NAMESPACE, f"{leaf.originator_id}:3")
    copy = uuid.uuid5(EVENT_ID_NAMESPACE, f"{leaf.originator_id}:3:444455556666")
    caller = {"eventID": str(base), "recipientAccountId": "111122223333"}
    other = {"eventID": str(copy), "sharedEventID": str(base), "recipientAccountId": "444455556666"}
    kv.check_records([caller, other], [leaf])
    for forged in (
        other | {"recipientAccountId": "777788889999"},
        caller | {"eventID": str(uuid.uuid4())},
        {"eventID": str(copy), "sharedEventID": str(uuid.uuid4())},
    ):
        with pytest.raises(kv.Failure, match="record not in ledger"):
            kv.check_records([forged], [leaf])


# --- digests -------------------------------------------------------------------------------------
class _LogFile:
    def __init__(self, out: Path, account: str, hour: str, records: list[dict[str, Any]]) -> None:
        content = json.dumps({"Records": records}).encode()
        self.path = (
            f"AWSLogs/{account}/CloudTrail/us-east-1/{hour[:4]}/{hour[4:6]}/{hour[6:8]}/"
            f"{account}_CloudTrail_us-east-1_{hour}00Z_{hashlib.sha256(content).hexdigest()[:16]}"
            ".json.gz"
        )
        (out / self.path).parent.mkdir(parents=True, exist_ok=True)
        (out / self.path).write_bytes(gzip.compress(content))
        self.sha256_uncompressed = hashlib.sha256(content).hexdigest()
        self.oldest_event_time = f"{hour[:4]}-{hour[4:6]}-{hour[6:8]}T{hour[9:11]}:05:00+00:00"
        self.newest_event_time = f"{hour[:4]}-{hour[4:6]}-{hour[6:8]}T{hour[9:11]}:55:00+00:00"


@pytest.fixture
def digested(tmp_path: Path) -> tuple[Path, list[str], kv.PublicKey, DigestSigner]:
    key = Ed25519PrivateKey.generate()
    signer = DigestSigner("keyledger.test/log", key)
    logs = [
        _LogFile(tmp_path, account, hour, [{"eventID": f"{account}-{hour}"}])
        for account in ("111122223333", "444455556666")
        for hour in ("20260101T09", "20260101T10", "20260102T23")
    ]
    write_digests(tmp_path, logs, signer)
    pinned = kv.parse_public_key(str(NoteVerifier.of(signer.name, key.public_key())))
    return tmp_path, sorted(f.path for f in logs), pinned, signer


def _digests(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.json.gz") if "CloudTrail-Digest" in str(p))


def test_digests_chain_per_account_and_region_and_verify(
    digested: tuple[Path, list[str], kv.PublicKey, DigestSigner],
) -> None:
    out, logs, pinned, _ = digested
    assert kv.check_digests(kv.Export(out), [pinned], logs) == (6, 2)
    first = json.loads(gzip.decompress(_digests(out)[0].read_bytes()))
    assert first["previousDigestSignature"] is None
    assert first["digestPublicKeyFingerprint"] == pinned.fingerprint
    assert first["digestEndTime"] == "2026-01-01T10:00:00Z"


def test_a_removed_middle_digest_breaks_the_chain(
    digested: tuple[Path, list[str], kv.PublicKey, DigestSigner],
) -> None:
    out, logs, pinned, _ = digested
    middle = _digests(out)[1]
    middle.unlink()
    Path(str(middle) + ".sig").unlink()
    with pytest.raises(kv.Failure, match="digest chain broken"):
        kv.check_digests(kv.Export(out), [pinned], logs)


def test_a_digest_signed_by_another_key_or_altered_fails(
    digested: tuple[Path, list[str], kv.PublicKey, DigestSigner],
) -> None:
    out, logs, pinned, _ = digested
    other = kv.parse_public_key(
        str(NoteVerifier.of("keyledger.test/log", Ed25519PrivateKey.generate().public_key()))
    )
    with pytest.raises(kv.Failure, match="digest signature invalid"):
        kv.check_digests(kv.Export(out), [other], logs)
    target = _digests(out)[0]
    body = json.loads(gzip.decompress(target.read_bytes()))
    body["logFiles"] = []
    target.write_bytes(gzip.compress(json.dumps(body).encode()))
    with pytest.raises(kv.Failure, match="digest signature invalid"):
        kv.check_digests(kv.Export(out), [pinned], logs)
