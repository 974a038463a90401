"""The console in a real browser: Playwright (the Python package) driving Debian's
chromium (installed by `make system-packages`; Playwright's own browsers are never
downloaded). One browser for the module, a fresh context (cookies) per test. Each test
saves a screenshot under test-artifacts/console/ (KEYLEDGER_CONSOLE_SCREENSHOTS names
another folder: tools/console_screenshots.sh writes the docs' images that way)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.access.conftest import Identities, allow, policy
from tests.conftest import Service
from tests.support.waiting import eventually

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("KEYLEDGER_CONSOLE_SCREENSHOTS") or ROOT / "test-artifacts" / "console")

if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError("chromium is missing: run `make system-packages`")
    pytest.skip("chromium is not installed (make system-packages)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@dataclass
class Scene:
    """A principal with a key that has a history worth showing."""

    access_key_id: str
    secret: str
    key_id: str
    account_id: str


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def scene(service: Service) -> Scene:
    identities = Identities(service)
    account = identities.account()
    admin = identities.principal(
        account,
        name="security-auditor",
        policies={"Auditor": policy(allow(), allow("cloudtrail:LookupEvents"))},
    )
    kms = admin.kms
    payments = identities.principal(account, name="payments-service", role=True).arn
    reader = identities.principal(account, name="batch-reader", role=True).arn
    key_id = kms.create_key(
        Description="Payments: card data envelope key",
        Tags=[{"TagKey": "team", "TagValue": "payments"}, {"TagKey": "pci", "TagValue": "yes"}],
    )["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/payments", TargetKeyId=key_id)
    kms.create_key(Description="Reports archive")
    kms.create_key(
        Description="Legacy batch signing", KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY"
    )
    document = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    document["Statement"].append(
        {
            "Sid": "AllowPaymentsDecrypt",
            "Effect": "Allow",
            "Principal": {"AWS": payments},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": "*",
        }
    )
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(document))
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    kms.rotate_key_on_demand(KeyId=key_id)
    kms.create_grant(
        KeyId=key_id,
        GranteePrincipal=reader,
        Operations=["Decrypt"],
        Name="batch-reader",
    )
    for _ in range(5):
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"4111 1111 1111 1111")["CiphertextBlob"]
        kms.decrypt(CiphertextBlob=blob)
    trail = service.runtime.audit_service
    assert eventually(lambda: trail.store.wait_for_current(1) is not False, timeout=10)
    return Scene(admin.access_key_id, admin.secret, key_id, account)


@pytest.fixture
def page(browser: Any, service: Service, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(
        base_url=service.endpoint, viewport={"width": 1280, "height": 860}, java_script_enabled=True
    )
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


def shoot(page: Any, name: str, *, full: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=full)


def sign_in(page: Any, scene: Scene, *, shot: bool = False) -> None:
    page.goto("/console/sign-in")
    page.get_by_label("Access key id").fill(scene.access_key_id)
    page.get_by_label("Secret access key").fill(scene.secret)
    if shot:
        shoot(page, "sign-in", full=False)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/keys")


def test_signing_in_shows_the_principals_keys(page: Any, scene: Scene) -> None:
    sign_in(page, scene, shot=True)

    assert page.get_by_role("heading", name="Keys", exact=True).is_visible()
    row = page.get_by_role("row").filter(has_text=scene.key_id)
    assert "alias/payments" in row.inner_text()
    assert "Payments: card data envelope key" in row.inner_text()
    shoot(page, "keys")


def test_a_keys_page_shows_its_timeline_and_policy_diff(page: Any, scene: Scene) -> None:
    sign_in(page, scene)
    page.get_by_role("link", name=scene.key_id).click()
    page.wait_for_url(f"**/console/keys/{scene.key_id}")

    timeline = page.locator("#timeline")
    for event in ("Created", "AliasAdded", "PolicyChanged", "RotationScheduleChanged", "Rotated"):
        assert timeline.get_by_text(event, exact=True).first.is_visible(), event
    diff = page.locator("#policy table.diff").first
    added = diff.locator("tr.diff-insert, tr.diff-replace")
    assert "AllowPaymentsDecrypt" in added.all_inner_texts().__str__()
    assert "batch-reader" in page.locator("#grants").inner_text()
    materials = page.locator("#materials").inner_text()
    assert "Material versions" in materials
    assert "ON_DEMAND" in materials
    assert page.locator("#usage svg rect.bar").count() == 48
    shoot(page, "key", full=False)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#policy").screenshot(path=str(SHOTS / "console-key-policy.png"))
    page.locator("#usage").screenshot(path=str(SHOTS / "console-key-usage.png"))


def test_the_trail_is_searched_by_event_name_and_shows_each_records_json(
    page: Any, scene: Scene
) -> None:
    sign_in(page, scene)
    page.get_by_role("link", name="Trail").click()
    page.get_by_label("Event name").fill("PutKeyPolicy")
    page.get_by_label("Resource (key id or ARN)").fill(scene.key_id)
    page.get_by_role("button", name="Search").click()

    rows = page.locator("table.trail tbody tr")
    assert rows.count() == 1
    rows.first.get_by_text("JSON").click()
    record = json.loads(rows.first.locator("pre").inner_text())
    assert record["eventName"] == "PutKeyPolicy"
    assert record["resources"][0]["ARN"].endswith(scene.key_id)
    shoot(page, "trail")


def test_a_report_opens_as_a_table_and_chart_with_its_csv(page: Any, scene: Scene) -> None:
    sign_in(page, scene)
    page.get_by_role("link", name="Reports").click()
    shoot(page, "reports", full=False)
    page.get_by_role("link", name="Security Hub KMS.1-KMS.5").click()

    assert page.get_by_role("heading", level=1).inner_text().startswith("AWS Security Hub")
    assert page.locator("figure.chart svg rect.bar").count() >= 1
    with page.expect_download() as downloaded:
        page.get_by_role("link", name="Download CSV").click()
    assert downloaded.value.suggested_filename == "security-hub.csv"
    shoot(page, "report")


def test_the_ledger_page_shows_the_integrity_status(page: Any, scene: Scene) -> None:
    sign_in(page, scene)
    page.get_by_role("link", name="Ledger integrity").click()

    assert page.get_by_role("heading", name="Ledger integrity").is_visible()
    assert page.get_by_role("heading", name="Last signed checkpoint").is_visible()
    shoot(page, "ledger")


def test_the_console_is_usable_with_the_keyboard(page: Any, scene: Scene) -> None:
    sign_in(page, scene)

    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto("/console/keys")
    for expected in ("Skip to content", "Keys", "Trail", "Reports", "Ledger integrity"):
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent.trim()") == expected
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/ledger")
    page.keyboard.press("/")  # focuses nothing here (no search): no error either
    page.goto("/console/keys")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
