-- The Merkle log's BRIN index of leaf positions (migrations/020) no longer asks autovacuum
-- to summarize each range as it fills. At ~6,000 events a second a 16-page range fills
-- about every 0.3 s, while autovacuum takes its queue of such requests (256 at most) only
-- when it visits the database, once a minute: the queue stayed full, and every further
-- request wrote "request for BRIN range summarization ... was not recorded" to the
-- server's log, ~3 lines a second for as long as the load lasted. The ranges it dropped
-- were summarized by the table's next (auto)vacuum, as every range now is: under load the
-- index answered the same, without the log lines.
ALTER INDEX IF EXISTS ledger_tree_leaves_by_position_brin SET (autosummarize = off);
