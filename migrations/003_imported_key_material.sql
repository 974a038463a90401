-- Imported key material (Origin EXTERNAL): each material has a wrapping key of its own
-- (parent_id = its KMS key), shredded when the material is deleted or expires, and with
-- the key when the key is deleted.
ALTER TABLE wrapping_keys ADD COLUMN IF NOT EXISTS parent_id uuid;
CREATE INDEX IF NOT EXISTS wrapping_keys_by_parent ON wrapping_keys (parent_id)
    WHERE parent_id IS NOT NULL;

-- Read model: imported materials and their expiry, for the scheduler.
CREATE TABLE IF NOT EXISTS kms_key_materials (
    key_id       uuid NOT NULL,
    material_id  text NOT NULL,
    imported     boolean NOT NULL,
    valid_to     timestamptz,
    PRIMARY KEY (key_id, material_id)
);
CREATE INDEX IF NOT EXISTS kms_key_materials_due ON kms_key_materials (valid_to)
    WHERE imported AND valid_to IS NOT NULL;
