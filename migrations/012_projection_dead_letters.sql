-- Events a projection could not apply after bounded retries, set aside so that it goes on
-- with the events after them (projections/batched.py). Each row is a gap in that view:
-- the ledger still holds the event; /readyz, /metrics and `keyledger audit replay` name it.
CREATE TABLE IF NOT EXISTS projection_dead_letters (
    projection_name     text NOT NULL,
    notification_id     bigint NOT NULL,
    originator_id       uuid NOT NULL,
    originator_version  bigint NOT NULL,
    topic               text NOT NULL,
    error_type          text NOT NULL,
    error_message       text NOT NULL,   -- bounded (projections.batched.MAX_ERROR_MESSAGE)
    attempts            integer NOT NULL,
    failed_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection_name, notification_id)
);
