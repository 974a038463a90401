"""Inclusion and consistency proofs over the ledger's Merkle log (projections/ledger_proofs.py,
app/usecases/ledger_evidence.py), on PostgreSQL with real events: every proof equals the
independent RFC 9162 reference's (tests/support/rfc9162_reference.py) and verifies with it;
wrong inputs get typed 4xx answers; the REST routes under /v1/ledger answer the use case's
documents over real HTTP and refuse callers who may not read the audit trail; the CLI's
``keyledger ledger`` prints the same and ``check-proof`` verifies them offline."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.usecases.ledger_evidence import LedgerEvidence, check_proof, checkpoint_document
from domain.checkpoints import Checkpoint, open_checkpoint, sign_checkpoint
from domain.errors import ValidationError
from domain.ledger_leaves import leaf_of
from domain.signed_notes import NoteVerifier
from projections.ledger_proofs import (
    EventNotInTreeError,
    InvalidSizesError,
    LeafNotUnderCheckpointError,
    NoSuchCheckpointError,
    NoSuchEventError,
    inclusion_proof,
)
from projections.merkle_log import MerkleLogProjection
from tests.access.conftest import Identities, Principal
from tests.api.test_rest_api import RestClient
from tests.audit.conftest import AUDITOR_POLICY
from tests.conftest import ACCOUNT_ID, REGION, Service, running_service
from tests.support import rfc9162_reference as ref
from tests.support.signing import sign_request

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[2]
ORIGIN = "keyledger.test/proofs"


@dataclass
class Proven:
    """A service whose ledger is under the Merkle log, with checkpoints at several sizes."""

    service: Service
    entries: list[bytes]  # the leaf inputs, by index (recomputed from keyledger_events)
    positions: list[int]  # each leaf's notification id
    sizes: list[int]  # the checkpoints' sizes, ascending
    verifiers: list[NoteVerifier]
    auditor: Principal  # cloudtrail:LookupEvents, in an account of its own
    stranger: Principal  # the operator account, no permission at all
    records: list[tuple[str, int, str]]  # (eventID, position, recipient account)

    @property
    def evidence(self) -> LedgerEvidence:
        evidence = self.service.runtime.ledger_evidence
        assert evidence is not None
        return evidence

    def root(self, size: int) -> bytes:
        checkpoint, _ = open_checkpoint(self.note(size), self.verifiers, ORIGIN)
        return checkpoint.root_hash

    def note(self, size: int) -> str:
        with psycopg.connect(self.service.runtime.database_url) as conn:
            row = conn.execute("SELECT note FROM ledger_checkpoints WHERE size = %s", (size,))
            found = row.fetchone()
        assert found is not None
        return str(found[0])


def _fill(service: Service, identities: Identities) -> tuple[Principal, Principal]:
    kms = service.client("kms")
    keys = [kms.create_key(Description=f"proofs {n}")["KeyMetadata"]["KeyId"] for n in range(2)]
    for n in range(24):  # a tree of ~40 leaves: several levels, uneven edges
        kms.encrypt(KeyId=keys[n % 2], Plaintext=b"x", EncryptionContext={"n": str(n)})
    auditor = identities.principal(identities.account(), policies={"Auditor": AUDITOR_POLICY})
    own = auditor.kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(2):
        auditor.kms.encrypt(KeyId=own, Plaintext=b"y")
    stranger = identities.principal(ACCOUNT_ID)
    return auditor, stranger


def _leaves(url: str) -> tuple[list[bytes], list[int]]:
    """The tree's leaves recomputed from the events under it, in one snapshot."""
    with psycopg.connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        tree = conn.execute("SELECT size, notification_id FROM ledger_tree").fetchone()
        assert tree is not None
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM keyledger_events WHERE notification_id <= %s ORDER BY notification_id",
            (tree[1],),
        ).fetchall()
    assert len(rows) == tree[0]
    return [leaf_of(int(p), o, int(v), t, bytes(s)) for p, o, v, t, s in rows], [
        int(r[0]) for r in rows
    ]


def _sign_checkpoints(url: str, entries: list[bytes]) -> list[NoteVerifier]:
    key = Ed25519PrivateKey.generate()
    verifier = NoteVerifier.of(ORIGIN, key.public_key())
    reference = ref.ReferenceTree(entries)
    n = len(entries)
    sizes = sorted({s for s in (1, 2, 3, 4, 5, 8, n // 2, n - 1, n) if 1 <= s <= n})
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ledger_signers (key_name, key_id, public_key, vkey)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (verifier.name, verifier.key_id, verifier.public_key, str(verifier)),
        )
        for size in sizes:
            root = reference.mth(0, size)
            note = sign_checkpoint(Checkpoint(ORIGIN, size, root), key)
            conn.execute(
                "INSERT INTO ledger_checkpoints (size, root, note) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (size, root, note),
            )
    return [verifier]


@pytest.fixture(scope="module")
def proven(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proven]:
    # The service's own log, signer and watch are off: this test builds the tree and signs
    # checkpoints at the sizes it chooses, with a key of its own.
    tmp = tmp_path_factory.mktemp("ledger-proofs")
    with running_service(tmp, ledger_log=False) as service:
        runtime = service.runtime
        auditor, stranger = _fill(service, Identities(service))
        head = int(runtime.ledger.recorder.max_notification_id() or 0)
        assert runtime.audit.wait_for(head, 30)
        MerkleLogProjection(runtime.ledger, runtime.pool, runtime.database_url).catch_up_to(head)
        entries, positions = _leaves(runtime.database_url)
        verifiers = _sign_checkpoints(runtime.database_url, entries)
        with psycopg.connect(runtime.database_url) as conn:
            sizes = [int(r[0]) for r in conn.execute("SELECT size FROM ledger_checkpoints")]
            records = [
                (str(e), int(p), str(a))
                for e, p, a in conn.execute(
                    "SELECT event_id, notification_id, recipient_account_id FROM audit_events"
                    " WHERE notification_id <= %s ORDER BY notification_id",
                    (positions[-1],),
                )
            ]
        yield Proven(
            service, entries, positions, sorted(sizes), verifiers, auditor, stranger, records
        )


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# ==== the use case against the reference ====================================================
def test_every_inclusion_proof_by_position_is_the_reference_path(proven: Proven) -> None:
    reference = ref.ReferenceTree(proven.entries)

    async def prove_all() -> list[tuple[int, int, dict[str, Any]]]:
        return [
            (size, index, await proven.evidence.inclusion_proof(None, position=pos, size=size))
            for size in proven.sizes
            for index, pos in enumerate(proven.positions[:size])
        ]

    for size, index, document in run(prove_all()):
        proof = [b64(h) for h in document["proof"]]
        assert proof == reference.path(index, 0, size)
        assert document["leaf_index"] == index and document["tree_size"] == size
        assert document["position"] == document["leaf"]["position"] == proven.positions[index]
        leaf_hash = ref.leaf_hash(proven.entries[index])
        assert b64(document["leaf_hash"]) == leaf_hash
        assert ref.verify_inclusion(index, size, leaf_hash, proof, proven.root(size))
        assert document["checkpoint"]["note"] == proven.note(size)


def test_the_newest_checkpoint_is_the_default(proven: Proven) -> None:
    newest = proven.sizes[-1]
    document = run(proven.evidence.inclusion_proof(None, position=proven.positions[0]))
    assert document["tree_size"] == newest
    assert run(proven.evidence.checkpoint(None)).size == newest


def test_inclusion_proofs_by_event_id_are_those_by_position(proven: Proven) -> None:
    assert proven.records, "no audit records to prove"

    async def prove_all() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        evidence = proven.evidence
        return [
            (
                await evidence.inclusion_proof(None, event_id=event_id),
                await evidence.inclusion_proof(None, position=position),
            )
            for event_id, position, _ in proven.records
        ]

    for (event_id, _, _), (by_id, by_position) in zip(
        proven.records, run(prove_all()), strict=True
    ):
        assert by_id["event_id"] == event_id and by_position["event_id"] is None
        assert {**by_id, "event_id": None} == by_position


def test_consistency_between_every_pair_of_checkpoints_is_the_reference_proof(
    proven: Proven,
) -> None:
    reference = ref.ReferenceTree(proven.entries)
    pairs = [(a, b) for a in proven.sizes for b in proven.sizes if a <= b]

    async def prove_all() -> list[dict[str, Any]]:
        return [await proven.evidence.consistency_proof(None, a, b) for a, b in pairs]

    for (a, b), document in zip(pairs, run(prove_all()), strict=True):
        proof = [b64(h) for h in document["proof"]]
        assert proof == (reference.proof(a, b) if a < b else [])
        assert ref.verify_consistency(a, b, proven.root(a), proven.root(b), proof)
        assert document["from_checkpoint"]["note"] == proven.note(a)
        assert document["to_checkpoint"]["note"] == proven.note(b)
        assert b64(document["from_root"]) == proven.root(a)


def test_consistency_from_a_size_no_checkpoint_has_answers_its_computed_root(
    proven: Proven,
) -> None:
    reference = ref.ReferenceTree(proven.entries)
    size = next(s for s in range(1, proven.sizes[-1]) if s not in proven.sizes)
    to = proven.sizes[-1]
    document = run(proven.evidence.consistency_proof(None, size, to))
    assert document["from_checkpoint"] is None
    assert b64(document["from_root"]) == reference.mth(0, size)
    proof = [b64(h) for h in document["proof"]]
    assert proof == reference.proof(size, to)
    assert ref.verify_consistency(size, to, reference.mth(0, size), proven.root(to), proof)


def test_wrong_inputs_get_typed_errors(proven: Proven) -> None:
    evidence = proven.evidence
    smallest, newest = proven.sizes[0], proven.sizes[-1]
    missing_size = next(s for s in range(1, newest) if s not in proven.sizes)
    cases: list[tuple[Any, type[Exception]]] = [
        (evidence.inclusion_proof(None, position=10**12), NoSuchEventError),
        (evidence.inclusion_proof(None, event_id=uuid.uuid4()), NoSuchEventError),
        (evidence.inclusion_proof(None, event_id="not-a-uuid\x00"), ValidationError),
        (evidence.inclusion_proof(None), ValidationError),
        (evidence.inclusion_proof(None, position=1, event_id=uuid.uuid4()), ValidationError),
        (
            evidence.inclusion_proof(None, position=proven.positions[smallest], size=smallest),
            LeafNotUnderCheckpointError,
        ),
        (
            evidence.inclusion_proof(None, position=proven.positions[0], size=missing_size),
            NoSuchCheckpointError,
        ),
        (evidence.checkpoint(None, missing_size), NoSuchCheckpointError),
        (evidence.checkpoint(None, 2**64), InvalidSizesError),
        (evidence.consistency_proof(None, newest, smallest), InvalidSizesError),
        (evidence.consistency_proof(None, 0, newest), InvalidSizesError),
        (evidence.consistency_proof(None, 1, missing_size), NoSuchCheckpointError),
        (evidence.checkpoints(None, None, 0), ValidationError),
    ]
    for coroutine, error in cases:
        with pytest.raises(error):
            run(coroutine)


def test_an_event_the_log_has_not_taken_yet_is_answered_as_such(proven: Proven) -> None:
    # A stored event past the tree's last position, seen only by this transaction (never
    # committed, so the running Merkle log never takes it).
    with psycopg.connect(proven.service.runtime.database_url) as conn:
        row = conn.execute(
            "INSERT INTO keyledger_events (notification_id, originator_id, originator_version,"
            " topic, state) SELECT max(notification_id) + 1000, gen_random_uuid(), 1, 'x', ''"
            " FROM keyledger_events RETURNING notification_id"
        ).fetchone()
        assert row is not None
        with pytest.raises(EventNotInTreeError, match="not in the tree yet"):
            inclusion_proof(conn, position=int(row[0]))
        conn.rollback()


# ==== REST ==================================================================================
def _get(
    proven: Proven,
    path: str,
    params: dict[str, Any] | None = None,
    who: Principal | None = None,
    headers: dict[str, str] | None = None,
    sign: bool = True,
) -> httpx.Response:
    service = proven.service
    url = str(httpx.URL(service.endpoint + path, params=params))
    headers = dict(headers or {})
    if sign:
        headers = sign_request(
            "GET",
            url,
            headers,
            b"",
            access_key_id=who.access_key_id if who else service.access_key_id,
            secret_access_key=who.secret if who else service.secret_access_key,
            region=REGION,
            service="kms",
            now=service.runtime.clock.now(),
        )
    return httpx.get(url, headers=headers, timeout=30)


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def test_rest_answers_the_use_cases_documents(proven: Proven) -> None:
    evidence = proven.evidence
    newest, middle = proven.sizes[-1], proven.sizes[len(proven.sizes) // 2]
    position, (event_id, event_position, _) = proven.positions[1], proven.records[0]
    assert _ok(_get(proven, "/v1/ledger/checkpoint")) == checkpoint_document(
        run(evidence.checkpoint(None))
    )
    assert _ok(_get(proven, "/v1/ledger/checkpoint", {"size": middle}))["size"] == middle
    for response in (
        _get(proven, "/v1/ledger/checkpoint.note", {"size": middle}),
        _get(proven, "/v1/ledger/checkpoint", {"size": middle}, headers={"Accept": "text/plain"}),
    ):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == proven.note(middle)
    assert _ok(_get(proven, "/v1/ledger/proofs/inclusion", {"position": position})) == run(
        evidence.inclusion_proof(None, position=position)
    )
    by_id = _ok(_get(proven, "/v1/ledger/proofs/inclusion", {"event_id": event_id, "size": newest}))
    assert by_id == run(evidence.inclusion_proof(None, event_id=event_id, size=newest))
    assert by_id["position"] == event_position
    consistency = _ok(_get(proven, "/v1/ledger/proofs/consistency", {"from": 3, "to": newest}))
    assert consistency == run(evidence.consistency_proof(None, 3, newest))
    signers = _ok(_get(proven, "/v1/ledger/public-key"))["signers"]
    assert str(proven.verifiers[0]) in [s["vkey"] for s in signers]
    mine = next(s for s in signers if s["vkey"] == str(proven.verifiers[0]))
    assert mine["key_name"] == ORIGIN and mine["key_id"] == proven.verifiers[0].key_id.hex()


def test_rest_pages_checkpoints_smallest_first(proven: Proven) -> None:
    found, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after is not None else {})
        page = _ok(_get(proven, "/v1/ledger/checkpoints", params))
        found += [c["size"] for c in page["checkpoints"]]
        after = page["next_after"]
        if after is None:
            break
    assert found == proven.sizes


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/v1/ledger/proofs/inclusion", {"position": 10**12}, 404, "NotFoundException"),
        ("/v1/ledger/proofs/inclusion", {"event_id": str(uuid.uuid4())}, 404, "NotFoundException"),
        ("/v1/ledger/proofs/inclusion", {"position": 1, "size": 7777}, 404, "NotFoundException"),
        ("/v1/ledger/proofs/inclusion", {}, 400, "ValidationException"),
        ("/v1/ledger/proofs/inclusion", {"position": "1\x00"}, 400, "ValidationException"),
        ("/v1/ledger/proofs/inclusion", {"position": 2**64}, 400, "ValidationException"),
        ("/v1/ledger/proofs/inclusion", {"position": 10**400}, 400, "ValidationException"),
        ("/v1/ledger/proofs/inclusion", {"event_id": "\x00' OR 1=1"}, 400, "ValidationException"),
        ("/v1/ledger/proofs/consistency", {"from": 3, "to": 2}, 400, "ValidationException"),
        ("/v1/ledger/proofs/consistency", {"from": 0}, 400, "ValidationException"),
        ("/v1/ledger/proofs/consistency", {"to": 2}, 400, "ValidationException"),
        ("/v1/ledger/checkpoint", {"size": -1}, 400, "ValidationException"),
        ("/v1/ledger/checkpoint", {"size": 7777}, 404, "NotFoundException"),
        ("/v1/ledger/checkpoints", {"limit": 1001}, 400, "ValidationException"),
        ("/v1/ledger/checkpoints", {"limit": 0}, 400, "ValidationException"),
    ],
)
def test_rest_answers_wrong_and_hostile_input_in_the_error_shape(
    proven: Proven, path: str, params: dict[str, Any], status: int, code: str
) -> None:
    response = _get(proven, path, params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["__type"] == code and isinstance(body["message"], str), body


def test_rest_refuses_unsigned_requests_and_callers_without_audit_permission(
    proven: Proven,
) -> None:
    for path in ("/v1/ledger/checkpoint", "/v1/ledger/public-key"):
        assert _get(proven, path, sign=False).status_code == 401
    for path, params in (
        ("/v1/ledger/checkpoint", {}),
        ("/v1/ledger/checkpoints", {}),
        ("/v1/ledger/public-key", {}),
        ("/v1/ledger/proofs/inclusion", {"position": proven.positions[0]}),
        ("/v1/ledger/proofs/consistency", {"from": 1}),
    ):
        response = _get(proven, path, params, who=proven.stranger)
        assert response.status_code == 403, response.text
        assert response.json()["__type"] == "AccessDeniedException"


def test_an_auditor_of_another_account_proves_only_its_own_records(proven: Proven) -> None:
    auditor = proven.auditor
    own = [(e, p) for e, p, a in proven.records if a == auditor.account_id]
    others = [(e, p) for e, p, a in proven.records if a != auditor.account_id]
    theirs = {p for _, p in own}
    assert own and others
    assert _ok(_get(proven, "/v1/ledger/checkpoint", who=auditor))["size"] == proven.sizes[-1]
    _ok(_get(proven, "/v1/ledger/proofs/consistency", {"from": 2}, who=auditor))
    event_id, position = own[0]
    assert (
        _ok(_get(proven, "/v1/ledger/proofs/inclusion", {"event_id": event_id}, who=auditor))[
            "position"
        ]
        == position
    )
    _ok(_get(proven, "/v1/ledger/proofs/inclusion", {"position": position}, who=auditor))
    hidden = next((e, p) for e, p in others if p not in theirs)
    for params in ({"event_id": hidden[0]}, {"position": hidden[1]}):
        response = _get(proven, "/v1/ledger/proofs/inclusion", params, who=auditor)
        assert response.status_code == 404, response.text
        assert response.json()["__type"] == "NotFoundException"


def test_openapi_documents_the_ledger_routes(proven: Proven) -> None:
    document = httpx.get(f"{proven.service.endpoint}/openapi.json").json()
    for path in (
        "/v1/ledger/checkpoint",
        "/v1/ledger/checkpoint.note",
        "/v1/ledger/checkpoints",
        "/v1/ledger/public-key",
        "/v1/ledger/proofs/inclusion",
        "/v1/ledger/proofs/consistency",
    ):
        assert "get" in document["paths"][path], path
    schemas = document["components"]["schemas"]
    assert "base64" in schemas["InclusionProofPublic"]["properties"]["leaf_hash"]["description"]
    assert {"CheckpointPublic", "ConsistencyProofPublic", "SignerList"} <= schemas.keys()


# ==== CLI ===================================================================================
def _cli(proven: Proven, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": proven.service.runtime.database_url}
    return subprocess.run(
        [sys.executable, "-m", "app", "ledger", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _flip_first_hash(document: dict[str, Any]) -> dict[str, Any]:
    first = document["proof"][0]
    return {
        **document,
        "proof": [("B" if first[0] == "A" else "A") + first[1:], *document["proof"][1:]],
    }


def test_cli_prints_the_documents_and_check_proof_verifies_them(
    proven: Proven, tmp_path: Path
) -> None:
    newest = proven.sizes[-1]
    raw = _cli(proven, "checkpoint", "--raw", "--size", str(newest))
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == proven.note(newest)
    vkey = str(proven.verifiers[0])
    keys, document = _cli(proven, "public-key"), _cli(proven, "public-key", "--json")
    assert keys.returncode == document.returncode == 0, keys.stderr + document.stderr
    assert keys.stdout == vkey + "\n"  # a file to pin: one verifier key a line
    assert json.loads(document.stdout) == _ok(_get(proven, "/v1/ledger/public-key"))
    # The auditor's routine (docs/verifiable-ledger.md): pin the key, keep a checkpoint.
    (tmp_path / "pinned.vkey").write_text(keys.stdout)
    (tmp_path / "kept.note").write_text(raw.stdout)
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": proven.service.runtime.database_url}
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "audit",
            "verify",
            "--public-key-file",
            str(tmp_path / "pinned.vkey"),
            "--checkpoint",
            str(tmp_path / "kept.note"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr
    event_id = proven.records[-1][0]
    proofs = {
        "inclusion": _cli(proven, "prove-inclusion", "--event-id", event_id),
        "consistency": _cli(proven, "prove-consistency", "--from", "3", "--to", str(newest)),
    }
    expected = {
        "inclusion": run(proven.evidence.inclusion_proof(None, event_id=event_id)),
        "consistency": run(proven.evidence.consistency_proof(None, 3, newest)),
    }
    for kind, printed in proofs.items():
        assert printed.returncode == 0, printed.stderr
        document = json.loads(printed.stdout)
        assert document == expected[kind]
        good, bad = tmp_path / f"{kind}.json", tmp_path / f"{kind}-flipped.json"
        good.write_text(printed.stdout)
        bad.write_text(json.dumps(_flip_first_hash(document)))
        checked = _cli(proven, "check-proof", str(good), "--public-key", vkey, "--origin", ORIGIN)
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.startswith("OK: ") and checked.stdout.count("\n") == 1
        refused = _cli(proven, "check-proof", str(bad), "--public-key", vkey)
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr.startswith("FAILED: ") and refused.stderr.count("\n") == 1


def test_cli_answers_a_missing_checkpoint_with_an_error_line(proven: Proven) -> None:
    missing = _cli(proven, "checkpoint", "--size", str(10**12))
    assert missing.returncode == 2
    assert "NoSuchCheckpointError" in missing.stderr and "Traceback" not in missing.stderr


# ==== the service's own signer ================================================================
def test_a_running_service_proves_an_event_under_its_own_signed_checkpoint(
    service: Service,
) -> None:
    """With the log, signer and watch on (the shared service): the newest event is soon
    under a checkpoint the service signed, and its proof checks with the published key."""
    rest = RestClient(service, service.access_key_id, service.secret_access_key)
    kms = service.client("kms")
    kms.encrypt(KeyId=kms.create_key()["KeyMetadata"]["KeyId"], Plaintext=b"z")
    position = int(service.runtime.ledger.recorder.max_notification_id() or 0)
    deadline = time.monotonic() + 30
    while True:
        response = rest.get("/v1/ledger/proofs/inclusion", params={"position": position})
        if response.status_code == 200:
            break
        assert response.status_code == 404, response.text  # not yet under a checkpoint
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)
    signers = rest.get("/v1/ledger/public-key").json()["signers"]
    verifiers = [NoteVerifier.parse(s["vkey"]) for s in signers]
    origin = service.runtime.settings.checkpoint_origin
    assert check_proof(response.json(), verifiers, origin).startswith("OK: ")
    newest = rest.get("/v1/ledger/checkpoint").json()
    first = rest.get("/v1/ledger/checkpoints", params={"limit": 1}).json()["checkpoints"][0]
    consistency = rest.get(
        "/v1/ledger/proofs/consistency", params={"from": first["size"], "to": newest["size"]}
    )
    assert consistency.status_code == 200, consistency.text
    assert check_proof(consistency.json(), verifiers, origin).startswith("OK: ")
    rest.http.close()
