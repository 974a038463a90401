"""Calls to HSMs and external key stores, made off the writer for the commands that need them.

A command of a key in a custom key store (a CloudHSM key store's token, an external key
store's XKS proxy) needs a call that can take milliseconds to seconds: it must never run
on the single writer. The command asks its ``OutsideCalls`` for the answer; the first time
there is none, so it raises ``NeedsOutsideCall`` before changing anything. ``run`` then
makes the call off the writer and runs the command again: it checks everything again
(authorization, key state, the store's connection) against committed state, finds the
answer and records its ``Used`` event. A key disabled or a store disconnected meanwhile
fails the second run, so nothing is answered with a key that may no longer be used.

An answer can be an error (the token refused a tag, the proxy did not answer): the
command raises it when it asks again, after its own checks, so its failure is audited
like any other.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from app.ports import Command, CommandRunner, NeedsOutsideCall

if TYPE_CHECKING:
    from app.auth.credentials import Caller

T = TypeVar("T")
# A call at most this many times per request (ReEncrypt between two store keys makes two).
MAX_CALLS = 4
NONCE_SIZE = 12

Perform = Callable[[Any], Awaitable[Any]]


class OutsideCalls:
    """The answers of one request's outside calls (a call: a frozen dataclass), and whose
    request it is: an external key store's proxy is told the caller, the KMS operation and
    its request id (``caller`` None: the service's own request)."""

    __slots__ = ("_answers", "_perform", "caller", "nonce", "operation")

    def __init__(self, perform: Perform, caller: Caller | None = None, operation: str = "") -> None:
        self._perform = perform
        self._answers: dict[Any, Any] = {}
        # One nonce per request, so that a command run again seals the same bytes.
        self.nonce = os.urandom(NONCE_SIZE)
        self.caller = caller
        self.operation = operation

    def answer(self, call: Any) -> Any:
        """The call's answer; raises it when it is an error, NeedsOutsideCall when the
        call has not been made yet. Called by commands, on the writer."""
        try:
            found = self._answers[call]
        except KeyError:
            raise NeedsOutsideCall(call) from None
        if isinstance(found, BaseException):
            raise found
        return found

    def answered(self, kind: type, label: str) -> Any | None:
        """The call of that kind for ``label`` that was made successfully, if any."""
        for call, found in self._answers.items():
            if isinstance(call, kind) and getattr(call, "label", None) == label:
                return None if isinstance(found, BaseException) else call
        return None

    async def run(self, runner: CommandRunner, command: Command[T]) -> T:
        """Run ``command`` on the writer, making the outside calls it asks for."""
        for _ in range(MAX_CALLS):
            try:
                return await runner.run(command)
            except NeedsOutsideCall as need:
                self._answers[need.call] = await self._answer_of(need.call)
        return await runner.run(command)  # its calls are answered: this one finishes

    async def _answer_of(self, call: Any) -> Any:
        if call is None:  # the command asked for outside calls, and now has them
            return None
        try:
            return await self._perform(call)
        except Exception as error:  # raised by the command, after its checks
            return error


async def run_with_outside_calls(
    runner: CommandRunner,
    command_with: Callable[[OutsideCalls | None], Command[T]],
    perform: Perform,
    caller: Caller | None = None,
    operation: str = "",
) -> T:
    """Run the command ``command_with(None)``; when it turns out to need outside calls (a
    key in a custom key store: it raises NeedsOutsideCall), run ``command_with(calls)``
    with the OutsideCalls of ``caller``'s request ``operation`` instead. Keys outside
    stores pay nothing more."""
    try:
        return await runner.run(command_with(None))
    except NeedsOutsideCall:
        calls = OutsideCalls(perform, caller, operation)
        return await calls.run(runner, command_with(calls))
