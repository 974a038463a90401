"""``keyledger run --workers N``: the supervising process, kept small.

The ``keyledger`` command imports the whole application to build its argument parser;
a supervisor that only forks workers and restarts them need not keep all that (~50 MB)
for the life of the service. So ``keyledger run`` replaces itself (exec) with this
module, which imports settings, the database helpers and uvicorn only. It starts (or
attaches to) the embedded PostgreSQL, so the server lives as long as the supervisor,
migrates and bootstraps in a short-lived child, then runs uvicorn's supervisor over
``app.main:create_app``. Settings come from the environment (``keyledger run`` put its
command-line overrides there).
"""

from __future__ import annotations

import multiprocessing
import sys

from app.settings import Settings, load_settings


def prepare(settings: Settings) -> None:
    """Migrate, bootstrap the administrator and print its credentials (in a child)."""
    from app.cli import prepare_database

    prepare_database(settings)


def main() -> int:
    import uvicorn

    from app.database import resolve_database_url

    settings = load_settings()
    resolve_database_url(settings)
    child = multiprocessing.get_context("spawn").Process(
        target=prepare, args=(settings,), name="keyledger-prepare"
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        print("keyledger run: migration or bootstrap failed", file=sys.stderr)
        return 1
    uvicorn.run(
        "app.main:create_app", factory=True, host=settings.host, port=settings.port,
        workers=settings.workers, log_level=settings.log_level, access_log=False,
        proxy_headers=False, server_header=False, date_header=False,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
