-- 0003: local features, for finding mirrored, turned, cropped, framed and captioned copies
-- (lookalike/features). One row per image or bank entry described; images recorded before
-- this release have none and are found by their hashes until they are recorded again.
-- Idempotent, like 0001, so a database built from schema.sql with psql is only recorded.

-- ORB features of an image (lookalike.features.orb): a 5-byte header, then 4 bytes of
-- position and 32 of descriptor per feature, 90 features at most (3,245 bytes).
CREATE TABLE IF NOT EXISTS image_features (
    image_id  bigint PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    features  bytea NOT NULL
);
-- Descriptors are noise to a compressor: store them as they are, without trying.
ALTER TABLE image_features ALTER COLUMN features SET STORAGE EXTERNAL;

-- The same, for a flagged picture of a moderation bank.
CREATE TABLE IF NOT EXISTS bank_entry_features (
    entry_id  bigint PRIMARY KEY REFERENCES bank_entries (id) ON DELETE CASCADE,
    features  bytea NOT NULL
);
ALTER TABLE bank_entry_features ALTER COLUMN features SET STORAGE EXTERNAL;
