-- Root-key rotation to, from and between Shamir sets (issue 14; docs/key-custody.md,
-- app/infrastructure/shamir_root_key.py). The seal may now hold several sealed root keys:
--   current   the root key new rows are wrapped under, sealed under the unseal key whose
--             shares the keyholders hold;
--   previous  during a rotation from one Shamir set to another, the old root key, sealed
--             under the same (new) unseal key, deleted once no row is under it;
--   pending   a new set (`keyledger operator init --rotate`): a new root key under a new
--             unseal key, in use once T of its shares were given to the running service.
-- Still never an unseal key, a share, or a root key in the clear.
ALTER TABLE root_key_seal DROP CONSTRAINT root_key_seal_pkey;
ALTER TABLE root_key_seal DROP COLUMN singleton;
ALTER TABLE root_key_seal ADD COLUMN state text NOT NULL DEFAULT 'current'
    CHECK (state IN ('current', 'previous', 'pending'));
ALTER TABLE root_key_seal ADD PRIMARY KEY (root_key_id);
-- At most one current and one pending.
CREATE UNIQUE INDEX root_key_seal_one_each ON root_key_seal (state)
    WHERE state IN ('current', 'pending');
