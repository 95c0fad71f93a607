-- 0003: local features, for finding mirrored, turned, cropped, framed and captioned copies
-- (lookalike/features). One row per image or bank entry described; images recorded before
-- this release have none and are found by their hashes until they are recorded again.
-- Idempotent, like 0001, so a database built from schema.sql with psql is only recorded.

-- ORB features of an image (lookalike.features.orb): a 5-byte header, then 4 bytes of
-- position and 32 of descriptor per feature, 100 features at most (3,605 bytes).
CREATE TABLE IF NOT EXISTS image_features (
    image_id  bigint PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    features  bytea NOT NULL
);
-- Kept in the row (MAIN), two rows to a page: out of line (TOAST) each took 4,229 bytes
-- of pages and chunk index against 4,122 in the row.
ALTER TABLE image_features ALTER COLUMN features SET STORAGE MAIN;

-- The same, for a flagged picture of a moderation bank.
CREATE TABLE IF NOT EXISTS bank_entry_features (
    entry_id  bigint PRIMARY KEY REFERENCES bank_entries (id) ON DELETE CASCADE,
    features  bytea NOT NULL
);
-- A flagged picture keeps 300 features, 10.8 KB: out of line, and not run through a compressor
-- (descriptors are noise to it).
ALTER TABLE bank_entry_features ALTER COLUMN features SET STORAGE EXTERNAL;
