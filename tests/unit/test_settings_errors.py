"""A start-up configuration error names the setting and says how to fix it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import load_settings


def test_a_short_bootstrap_access_key_id_names_the_setting_and_the_fix() -> None:
    with pytest.raises(ValidationError) as raised:
        load_settings(bootstrap_access_key_id="FOOBARKEY", bootstrap_secret_access_key="x" * 40)
    message = raised.value.errors()[0]["msg"]
    assert "KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID must be 16-128 letters and digits" in message
    assert "'FOOBARKEY' has 9 characters" in message
    assert "unset it" in message


def test_a_short_bootstrap_access_key_id_points_to_emulator_mode() -> None:
    with pytest.raises(ValidationError) as raised:
        load_settings(bootstrap_access_key_id="test", bootstrap_secret_access_key="x" * 40)
    message = raised.value.errors()[0]["msg"]
    assert "emulator mode (KEYLEDGER_EMULATOR=1" in message
    assert "accepts any access key id" in message


def test_a_malformed_default_account_names_the_setting() -> None:
    with pytest.raises(ValidationError) as raised:
        load_settings(default_account_id="12345")
    assert "KEYLEDGER_DEFAULT_ACCOUNT_ID must be 12 digits" in raised.value.errors()[0]["msg"]
