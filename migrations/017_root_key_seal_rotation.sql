-- Root-key rotation to, from and between Shamir sets (issue 14; docs/key-custody.md,
-- app/infrastructure/shamir_root_key.py). The seal may now hold several sealed root keys:
--   current    the root key new rows are wrapped under, sealed under the unseal key whose
--              shares the keyholders hold;
--   previous   during a rotation from one Shamir set to another, the old root key, sealed
--              under the same (new) unseal key until no row is under it;
--   pending    a new set (`keyledger operator init --rotate`): a new root key under a new
--              unseal key, in use once T of its shares were given to the running service;
--   destroyed  a root key a completed rotation no longer needs: its id only, never again
--              anything sealed.
-- Still never an unseal key, a share, or a root key in the clear.
ALTER TABLE root_key_seal DROP CONSTRAINT root_key_seal_pkey;
ALTER TABLE root_key_seal DROP COLUMN singleton;
ALTER TABLE root_key_seal ADD COLUMN state text NOT NULL DEFAULT 'current'
    CHECK (state IN ('current', 'previous', 'pending', 'destroyed'));
ALTER TABLE root_key_seal ALTER COLUMN sealed_key DROP NOT NULL;
ALTER TABLE root_key_seal ADD CHECK ((state = 'destroyed') = (sealed_key IS NULL));
ALTER TABLE root_key_seal ADD PRIMARY KEY (root_key_id);
-- At most one current and one pending.
CREATE UNIQUE INDEX root_key_seal_one_each ON root_key_seal (state)
    WHERE state IN ('current', 'pending');

-- A new wrapping key is never put under a sealed root key that is no longer current: a
-- process that missed a switch to a new Shamir set (another replica on this database) is
-- refused rather than leaving a row under a key the rotation then destroys.
CREATE OR REPLACE FUNCTION keyledger_refuse_retired_root_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM root_key_seal
        WHERE root_key_id = NEW.root_key_id AND state IN ('previous', 'destroyed')
    ) THEN
        RAISE EXCEPTION 'root key % is no longer current (the Shamir set was switched):'
            ' this process must be unsealed with the new set', NEW.root_key_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER wrapping_keys_under_a_current_root_key
    BEFORE INSERT ON wrapping_keys
    FOR EACH ROW EXECUTE FUNCTION keyledger_refuse_retired_root_key();
