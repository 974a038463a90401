"""KeyLedger's chaos and fuzz harness (``make chaos``, ``python -m tools.chaos``).

It starts the real service (``keyledger run --workers 2``) on a temporary data dir with
its embedded PostgreSQL, attacks it under legitimate load, and checks that every promise
the service made still holds afterwards:

* kill -9 loops: the database alone, then the whole service with its database;
* database outages (frozen and stopped) with /readyz probed every 100 ms;
* floods of unknown access key ids and no-op requests, and oversized bodies;
* hostile text in every string member of every AWS JSON operation;
* fuzzing: schemathesis over the REST API's OpenAPI, and a fuzzer driven by botocore's
  KMS model over every AWS JSON operation.

``--short`` is the CI mode (under 3 minutes); the default is the full run. See
``tools/chaos/cli.py`` for the options and docs/chaos.md for what each check means.
"""
