"""The root key in a PKCS#11 token: an HSM, SoftHSM2 in development and tests
(issue 14; docs/key-custody.md).

The root key is an AES-256 secret key object created in the token (``keyledger operator
create-hsm-key``): a token object, sensitive and never extractable, so its bytes never
leave the token and are never in this process. Wrapping keys are sealed by the token with
CKM_AES_GCM (C_Encrypt/C_Decrypt), a random 96-bit IV and the additional data the
in-memory key uses (the owner's id), rather than CKM_AES_KEY_WRAP_PAD: C_WrapKey and
C_UnwrapKey work on key *objects*, so each wrap would import the wrapping key into the
token and each unwrap would create an object whose value must then be extractable to be
read back (four calls and an object to destroy instead of one call), and RFC 5649 has no
additional data to bind a row to its owner. SoftHSM2 supports both; GCM is in PKCS#11
v2.40 and every HSM we know.

Stored format: ``FORMAT`` (4 bytes), the IV (12 bytes), ciphertext and tag. The marker
and the length (64 bytes for a 32-byte key, 60 in the in-memory format) tell its rows
from the in-memory key's, and a row of another format is refused without a token call.

Sessions: PKCS#11 login belongs to the application, not to one session (a second C_Login
fails with CKR_USER_ALREADY_LOGGED_IN; any C_Logout logs every session out), so this
process keeps one logged-in session per token, shared by every key on it (two during a
rotation between keys of one token). python-pkcs11 initialises the library without
locking callbacks, which tells it that no two threads call it at once: every call goes
through one process-wide lock, held for one encrypt or decrypt (~25 us in SoftHSM2), so
the writer's event loop never waits long for it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from app.infrastructure.root_keys import RootKeyError, wrapping_aad
from app.settings import Settings

FORMAT = b"p11\x01"  # a PKCS#11 row, version 1
IV_BYTES = 12
TAG_BITS = 128
KEY_BITS = 256
#: The longest a caller waits for another thread's token call before giving up.
LOCK_WAIT_SECONDS = 5.0

#: The attributes of a root key object: a token object, usable only to encrypt and
#: decrypt inside the token, never readable nor wrappable out of it.
ROOT_KEY_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}

# The session or the token went away: log in again once, then give up.
_LOST = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.TokenNotPresent,
    p11.UserNotLoggedIn,
    p11.KeyHandleInvalid,
    p11.ObjectHandleInvalid,
)

_T = TypeVar("_T")
_lock = threading.RLock()


@contextmanager
def _token_call() -> Iterator[None]:
    if not _lock.acquire(timeout=LOCK_WAIT_SECONDS):
        raise RootKeyError(f"the PKCS#11 token has been busy for {LOCK_WAIT_SECONDS:g} s")
    try:
        yield
    finally:
        _lock.release()


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the root key is: the library, the token (label or slot), the key's label."""

    module: str
    token_label: str | None
    slot: int | None
    pin: str = field(repr=False)
    key_label: str = "keyledger-root"

    @classmethod
    def from_settings(cls, settings: Settings, *, key_label: str | None = None) -> Pkcs11Config:
        if settings.pkcs11_token_label is None and settings.pkcs11_slot is None:
            raise RootKeyError("the PKCS#11 root key needs pkcs11_token_label or pkcs11_slot")
        try:
            pin = settings.pkcs11_pin_value()
        except OSError as error:
            raise RootKeyError(
                f"cannot read pkcs11_pin_file {settings.pkcs11_pin_file}: {error.strerror}"
            ) from None
        if not pin:
            raise RootKeyError("the PKCS#11 root key needs pkcs11_pin or pkcs11_pin_file")
        return cls(
            module=str(settings.pkcs11_module),
            token_label=settings.pkcs11_token_label,
            slot=settings.pkcs11_slot,
            pin=pin,
            key_label=key_label or settings.pkcs11_key_label,
        )

    @property
    def token_name(self) -> str:
        return repr(self.token_label) if self.token_label is not None else f"in slot {self.slot}"


def _load_library(module: str) -> Any:
    if not Path(module).exists():
        raise RootKeyError(f"PKCS#11 module not found: {module} (pkcs11_module)")
    try:
        return pkcs11.lib(module)
    except p11.PKCS11Error as error:
        raise RootKeyError(f"cannot load the PKCS#11 module {module}: {error}") from None


def _find_token(lib: Any, config: Pkcs11Config) -> Any:
    try:
        if config.slot is not None:
            slots = {slot.slot_id: slot for slot in lib.get_slots(token_present=True)}
            if config.slot not in slots:
                raise RootKeyError(f"no PKCS#11 token in slot {config.slot}")
            token = slots[config.slot].get_token()
            if config.token_label is not None and token.label != config.token_label:
                raise RootKeyError(
                    f"the token in slot {config.slot} is {token.label!r},"
                    f" not {config.token_label!r}"
                )
            return token
        return lib.get_token(token_label=config.token_label)
    except p11.NoSuchToken:
        raise RootKeyError(f"no PKCS#11 token labelled {config.token_label!r}") from None
    except p11.MultipleTokensReturned:
        raise RootKeyError(
            f"several PKCS#11 tokens are labelled {config.token_label!r}: set pkcs11_slot"
        ) from None


def _pin_digest(pin: str) -> bytes:
    return hashlib.sha256(b"keyledger pkcs11 pin\0" + pin.encode()).digest()


class _Login:
    """This process's logged-in session to one token, shared by every key on it."""

    _open: dict[tuple[str, int], _Login] = {}

    def __init__(self, name: tuple[str, int], token: Any, config: Pkcs11Config) -> None:
        self._name = name
        self.token = token
        self.token_name = config.token_name
        self._pin = config.pin  # kept to log in again if the token drops the session
        self._pin_digest = _pin_digest(config.pin)
        self.session: Any = None
        self.generation = 0
        self.users = 0
        self._log_in()

    @classmethod
    def acquire(cls, config: Pkcs11Config) -> _Login:
        with _token_call():
            token = _find_token(_load_library(config.module), config)
            name = (config.module, int(token.slot.slot_id))
            login = cls._open.get(name)
            if login is None:
                login = cls._open[name] = cls(name, token, config)
            elif not hmac.compare_digest(login._pin_digest, _pin_digest(config.pin)):
                raise RootKeyError(
                    f"the PKCS#11 PIN differs from the one this process logged in to"
                    f" token {config.token_name} with"
                )
            login.users += 1
            return login

    def release(self) -> None:
        with _token_call():
            self.users -= 1
            if self.users > 0:
                return
            self._open.pop(self._name, None)
            self._close_session()

    def _log_in(self) -> None:
        try:
            self.session = self.token.open(user_pin=self._pin)
        except p11.UserAlreadyLoggedIn:
            # Logged in by a session this module does not own (a test's own): share it.
            self.session = self.token.open()
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            raise RootKeyError(f"the PKCS#11 token {self.token_name} refused the PIN") from None
        except p11.PinLocked:
            raise RootKeyError(f"the PKCS#11 token {self.token_name}'s PIN is locked") from None
        except p11.PKCS11Error as error:
            raise RootKeyError(
                f"cannot log in to the PKCS#11 token {self.token_name}: {type(error).__name__}"
            ) from None
        self.generation += 1

    def _close_session(self) -> None:
        with suppress(p11.PKCS11Error):  # already gone with the token
            self.session.close()

    def log_in_again(self, generation: int) -> None:
        """After a lost session (lock held): once, whichever key noticed first."""
        if generation == self.generation:
            self._close_session()
            self._log_in()


class Pkcs11RootKey:
    """The root key as a non-extractable AES-256 key in a PKCS#11 token."""

    def __init__(self, config: Pkcs11Config) -> None:
        self._label = config.key_label
        self._login = _Login.acquire(config)
        try:
            with _token_call():
                self._generation = self._login.generation
                self._key = self._find_key()
                self._key_id = self._identify(self._key)
        except BaseException:
            self._login.release()
            raise
        self._closed = False

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def known_ids(self) -> tuple[str, ...]:
        return (self._key_id,)

    def wrap(self, owner_id: uuid.UUID, key: bytes) -> bytes:
        iv = secrets.token_bytes(IV_BYTES)
        params = GCMParams(iv, wrapping_aad(owner_id), TAG_BITS)
        sealed = self._call(
            lambda k: k.encrypt(key, mechanism=Mechanism.AES_GCM, mechanism_param=params)
        )
        return FORMAT + iv + bytes(sealed)

    def unwrap(self, owner_id: uuid.UUID, wrapped: bytes) -> bytes:
        if not wrapped.startswith(FORMAT) or len(wrapped) < len(FORMAT) + IV_BYTES + 16:
            raise RootKeyError(f"wrapping key {owner_id} was not wrapped in a PKCS#11 token")
        iv = wrapped[len(FORMAT) : len(FORMAT) + IV_BYTES]
        params = GCMParams(iv, wrapping_aad(owner_id), TAG_BITS)
        body = wrapped[len(FORMAT) + IV_BYTES :]
        try:
            opened = self._call(
                lambda k: k.decrypt(body, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            )
        except p11.PKCS11Error:  # SoftHSM2 says CKR_GENERAL_ERROR for a wrong tag
            raise RootKeyError(
                f"wrapping key {owner_id} does not open under root key {self._key_id}"
            ) from None
        return bytes(opened)

    def close(self) -> None:
        """Release this key's share of the token session (logged out with the last)."""
        if not self._closed:
            self._closed = True
            self._login.release()

    # --- the token -----------------------------------------------------------------
    def _call(self, operation: Callable[[Any], _T]) -> _T:
        """One token operation under the lock; a lost session is logged in again once."""
        for attempt in range(2):
            with _token_call():
                try:
                    if self._generation != self._login.generation:
                        self._key, self._generation = self._find_key(), self._login.generation
                    return operation(self._key)
                except _LOST as error:
                    if attempt:
                        raise RootKeyError(
                            f"the PKCS#11 token {self._login.token_name} is unavailable:"
                            f" {type(error).__name__}"
                        ) from None
                    self._login.log_in_again(self._generation)
        raise AssertionError("unreachable")

    def _find_key(self) -> Any:
        """The root key object, refused unless it is what create-hsm-key makes."""
        name = f"{self._label!r} in token {self._login.token_name}"
        found = list(
            self._login.session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.LABEL: self._label,
                }
            )
        )
        if not found:
            raise RootKeyError(
                f"no AES key labelled {name} (create one with keyledger operator create-hsm-key)"
            )
        if len(found) > 1:
            raise RootKeyError(f"{len(found)} AES keys are labelled {name}: one is needed")
        key = found[0]
        if not key[Attribute.SENSITIVE] or key[Attribute.EXTRACTABLE]:
            raise RootKeyError(f"the key {name} is extractable or not sensitive: refusing it")
        if key[Attribute.VALUE_LEN] * 8 != KEY_BITS:
            raise RootKeyError(f"the key {name} is not AES-{KEY_BITS}")
        if not (key[Attribute.ENCRYPT] and key[Attribute.DECRYPT]):
            raise RootKeyError(f"the key {name} may not encrypt and decrypt")
        return key

    def _identify(self, key: Any) -> str:
        """'p11:' and a hash of the key's label, CKA_ID and key check value (computed by
        the token from the key): stable, revealing nothing, new for a new key. Not the
        token's serial, so that a key replicated to another token keeps its id."""
        try:
            check = bytes(key[Attribute.CHECK_VALUE])
        except p11.PKCS11Error:  # not every token computes one: CKA_ID then tells keys apart
            check = b""
        parts = [self._label.encode(), bytes(key[Attribute.ID] or b""), check]
        digest = hashlib.sha256(b"keyledger pkcs11 root key\0" + b"\0".join(parts))
        return "p11:" + digest.hexdigest()[:16]


def create_hsm_key(config: Pkcs11Config) -> str:
    """Generate the root key in the token under ``config.key_label`` (refused if a key
    has that label already); its key id."""
    login = _Login.acquire(config)
    try:
        with _token_call():
            # A read-write session of the same login: no PIN, so closing it logs no one out.
            session = login.token.open(rw=True)
            try:
                existing = list(session.get_objects({Attribute.LABEL: config.key_label}))
                if existing:
                    raise RootKeyError(
                        f"token {config.token_name} already has an object labelled"
                        f" {config.key_label!r}: choose another label"
                    )
                session.generate_key(
                    KeyType.AES,
                    KEY_BITS,
                    label=config.key_label,
                    id=secrets.token_bytes(16),  # tells this key from any later one
                    store=True,
                    template=ROOT_KEY_TEMPLATE,
                )
            except p11.PKCS11Error as error:
                raise RootKeyError(
                    f"the token {config.token_name} could not create the key:"
                    f" {type(error).__name__}"
                ) from None
            finally:
                session.close()
    finally:
        login.release()
    key = Pkcs11RootKey(config)
    try:
        return key.key_id
    finally:
        key.close()
