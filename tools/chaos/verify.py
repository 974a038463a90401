"""After the faults: were the service's promises kept?

For every acknowledged operation (`tools.chaos.load.Ack`):

* the ledger holds exactly one ``Used`` event with its request id (durable, not doubled);
* the audit trail (the ``audit_events`` view, by request id) holds exactly one record of
  it, within ``trail_bound_s`` of the load's end (the catch-up time is the audit lag);
* its ciphertext (Encrypt, GenerateDataKey) still decrypts, through the service, to the
  plaintext the harness chose or was given.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eventsourcing.utils import get_topic

from domain.keys import Key
from tools.chaos.clients import KmsClient
from tools.chaos.harness import Harness, log
from tools.chaos.load import Ack

USED_TOPIC = get_topic(Key.Used)
DECRYPT_THREADS = 6
POLL_S = 0.5


def _counts(rows: Iterable[tuple[Any, ...]]) -> dict[str, int]:
    return {str(row[0]): int(row[1]) for row in rows if row[0] is not None}


def _used_events(h: Harness) -> dict[str, int]:
    with h.service.postgres.connect(timeout=120.0) as conn:
        rows = conn.execute(
            "SELECT convert_from(state, 'UTF8')::jsonb->>'request_id', count(*)"
            " FROM keyledger_events WHERE topic = %s AND originator_id = ANY(%s::uuid[])"
            " GROUP BY 1",
            (USED_TOPIC, h.keys),
        ).fetchall()
    return _counts(rows)


def _trail_records(h: Harness) -> dict[str, int]:
    with h.service.postgres.connect(timeout=120.0) as conn:
        rows = conn.execute(
            "SELECT request_id, count(*) FROM audit_events"
            " WHERE event_name IN ('Encrypt', 'Decrypt', 'GenerateDataKey') GROUP BY 1"
        ).fetchall()
    return _counts(rows)


def verify(h: Harness) -> None:
    acks = list(h.recorder.acks)
    profile = h.profile
    report = h.report
    wanted = {ack.request_id for ack in acks}
    report.figure(
        "durability",
        "acknowledged operations",
        f"{len(acks):,} ({', '.join(f'{op} {n:,}' for op, n in _by_operation(acks).items())})",
    )
    # The trail first: the decryptions below add records of their own.
    started = time.monotonic()
    deadline = started + profile.trail_bound_s
    trail: dict[str, int] = {}
    while True:
        trail = _trail_records(h)
        missing = wanted - trail.keys()
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    catch_up = time.monotonic() - started
    doubled = [rid for rid in wanted if trail.get(rid, 0) > 1]
    report.invariant(
        "durability",
        "trail records of acknowledged ops (by request id)",
        not missing and not doubled,
        f"{len(wanted) - len(missing):,}/{len(wanted):,}; {len(missing):,} missing, "
        f"{len(doubled):,} doubled",
        [f"missing {rid}" for rid in sorted(missing)[:3]]
        + [f"doubled {rid}" for rid in doubled[:2]],
    )
    report.invariant(
        "durability",
        f"audit lag: trail complete within {profile.trail_bound_s:g} s of the load",
        not missing,
        f"{catch_up:.2f} s" if not missing else f"incomplete after {catch_up:.0f} s",
    )
    used = _used_events(h)
    lost = wanted - used.keys()
    twice = [rid for rid in wanted if used.get(rid, 0) > 1]
    report.invariant(
        "durability",
        "Used event of every acknowledged op (ledger)",
        not lost and not twice,
        f"{len(wanted) - len(lost):,}/{len(wanted):,}; {len(lost):,} lost, {len(twice):,} doubled",
        [f"lost {rid}" for rid in sorted(lost)[:3]] + [f"doubled {rid}" for rid in twice[:2]],
    )
    _decrypt_all(h, [ack for ack in acks if ack.ciphertext])
    wrong = h.recorder.wrong_plaintexts
    report.invariant(
        "durability",
        "Decrypt under load returned the right plaintext",
        not wrong,
        f"{len(wrong):,} wrong",
        wrong[:5],
    )
    h.report.figures["durability"] = {
        "acknowledged": len(acks),
        "trail_missing": len(missing),
        "trail_doubled": len(doubled),
        "trail_catch_up_s": round(catch_up, 3),
        "used_lost": len(lost),
        "used_doubled": len(twice),
    }


def _by_operation(acks: list[Ack]) -> dict[str, int]:
    found: dict[str, int] = {}
    for ack in acks:
        found[ack.operation] = found.get(ack.operation, 0) + 1
    return found


def _decrypt_all(h: Harness, sealed: list[Ack]) -> None:
    local = threading.local()
    clients: list[KmsClient] = []
    lock = threading.Lock()

    def client() -> KmsClient:
        found: KmsClient | None = getattr(local, "client", None)
        if found is None:
            found = h.kms()
            local.client = found
            with lock:
                clients.append(found)
        return found

    def one(ack: Ack) -> str | None:
        params: dict[str, Any] = {"CiphertextBlob": ack.ciphertext}
        if ack.context:
            params["EncryptionContext"] = ack.context_dict()
        reply = client().call("Decrypt", params)
        if reply.status != 200:
            return f"{ack.operation} {ack.request_id}: Decrypt answered {reply.describe(160)}"
        answer = reply.json() or {}
        if base64.b64decode(answer.get("Plaintext", "")) != ack.plaintext:
            return f"{ack.operation} {ack.request_id}: Decrypt gave other bytes"
        return None

    started = time.monotonic()
    with ThreadPoolExecutor(DECRYPT_THREADS) as pool:
        failures = [f for f in pool.map(one, sealed) if f is not None]
    for found in clients:
        found.close()
    seconds = time.monotonic() - started
    log(
        f"verify: decrypted {len(sealed):,} acknowledged ciphertexts in {seconds:.1f} s, "
        f"{len(failures)} failed"
    )
    h.report.invariant(
        "durability",
        "acknowledged ciphertexts that do not decrypt",
        not failures,
        f"{len(failures):,} of {len(sealed):,}",
        failures[:5],
    )
