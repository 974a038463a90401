"""A database that could not be reached is a retryable 503 wherever it surfaces, not a
500: a list query in a thread may meet a broken pooled connection, not only the writer."""

from __future__ import annotations

import psycopg
import pytest

from app.aws.errors import aws_error, rest_status


def _connection_error() -> psycopg.OperationalError:
    try:
        psycopg.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=1)
    except psycopg.OperationalError as error:
        return error
    pytest.fail("a connection to port 1 succeeded")


def test_a_lost_connection_is_answered_as_a_dependency_timeout():
    code, status, _ = aws_error(_connection_error())

    assert (code, status) == ("DependencyTimeoutException", 503)


def test_a_lost_connection_is_a_503_over_rest():
    assert rest_status(_connection_error()) == 503


def test_an_error_the_database_answered_stays_internal():
    error = psycopg.errors.DivisionByZero("division by zero")

    assert aws_error(error)[:2] == ("KMSInternalException", 500)
    assert rest_status(error) == 500
