"""The console under the production process model (``keyledger run --workers 2``): a
session opened by one worker is accepted by the other (its token is MAC'd under the
vault's secret, not kept in a process's memory)."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.keyledger_process import Checkout, free_port, private_dir

pytestmark = pytest.mark.e2e


@pytest.fixture
def workdir() -> Iterator[Path]:
    with private_dir() as path:
        yield path


def test_a_console_session_is_accepted_by_every_worker(workdir: Path) -> None:
    checkout = Checkout.make(workdir)
    process = checkout.start("--workers", "2", "--port", str(free_port()))
    try:
        endpoint = process.wait_until_serving(timeout=90)
        credentials = checkout.kms(endpoint)._request_signer._credentials
        with httpx.Client(base_url=endpoint, timeout=30) as browser:
            form = browser.get("/console/sign-in").text
            found = re.search(r'name="csrf" value="([^"]+)"', form)
            assert found is not None
            signed_in = browser.post(
                "/console/sign-in",
                data={
                    "csrf": found.group(1),
                    "access_key_id": credentials.access_key,
                    "secret_access_key": credentials.secret_key,
                },
            )
            assert signed_in.status_code == 303, signed_in.text
            session = browser.cookies["keyledger_console"]

        workers = set()
        for _ in range(40):  # a new connection each time: either worker may answer
            if len(workers) == 2:
                break
            with httpx.Client(base_url=endpoint, timeout=30) as fresh:
                fresh.cookies.set("keyledger_console", session, path="/console")
                page = fresh.get("/console/keys", follow_redirects=False)
                assert page.status_code == 200, (page.status_code, process.output())
                workers.add(page.headers["x-keyledger-process-id"])
        assert len(workers) == 2, "one worker answered every page; the test proved nothing"
    finally:
        status = process.interrupt(timeout=40, signum=signal.SIGTERM)
    assert status == 0, process.output()
