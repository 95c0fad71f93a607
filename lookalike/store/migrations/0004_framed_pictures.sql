-- 0004: framed pictures, found by the dHash of what is inside the frame. Images recorded
-- before this release have none and are found as before until they are recorded again.
-- Idempotent, like 0001, so a database built from schema.sql with psql is only recorded.

-- Framed pictures (0004): a picture someone framed or letterboxed keeps the dHash of what is
-- inside the frame (hash kind framed_dhash, lookalike/kinds/framed_dhash.py), searched with
-- the query's dHash, and where in the image that picture sits.
-- A kind searched with another kind's hashes, not a query hash of its own; a bank's radius for
-- it is the bank's radius for that kind.
ALTER TABLE hash_kinds ADD COLUMN IF NOT EXISTS searched_with text REFERENCES hash_kinds (name);

CREATE TABLE IF NOT EXISTS framed_dhash_image_hashes (
    image_id bigint NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    hash bigint NOT NULL,
    chunk0 integer GENERATED ALWAYS AS (((hash >> 43) & 2097151)::integer) STORED,
    chunk1 integer GENERATED ALWAYS AS (((hash >> 22) & 2097151)::integer) STORED,
    chunk2 integer GENERATED ALWAYS AS (((hash >> 0) & 4194303)::integer) STORED,
    PRIMARY KEY (image_id, hash)
);
CREATE TABLE IF NOT EXISTS framed_dhash_bank_hashes (
    entry_id bigint NOT NULL REFERENCES bank_entries (id) ON DELETE CASCADE,
    bank_id bigint NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
    active boolean NOT NULL DEFAULT true,
    hash bigint NOT NULL,
    chunk0 integer GENERATED ALWAYS AS (((hash >> 43) & 2097151)::integer) STORED,
    chunk1 integer GENERATED ALWAYS AS (((hash >> 22) & 2097151)::integer) STORED,
    chunk2 integer GENERATED ALWAYS AS (((hash >> 0) & 4194303)::integer) STORED,
    PRIMARY KEY (entry_id, hash)
);
CREATE INDEX IF NOT EXISTS framed_dhash_image_hashes_chunk0
    ON framed_dhash_image_hashes (chunk0) INCLUDE (hash, image_id);
CREATE INDEX IF NOT EXISTS framed_dhash_image_hashes_chunk1
    ON framed_dhash_image_hashes (chunk1) INCLUDE (hash, image_id);
CREATE INDEX IF NOT EXISTS framed_dhash_image_hashes_chunk2
    ON framed_dhash_image_hashes (chunk2) INCLUDE (hash, image_id);
CREATE INDEX IF NOT EXISTS framed_dhash_bank_hashes_chunk0
    ON framed_dhash_bank_hashes (bank_id, chunk0) INCLUDE (hash, entry_id) WHERE active;
CREATE INDEX IF NOT EXISTS framed_dhash_bank_hashes_chunk1
    ON framed_dhash_bank_hashes (bank_id, chunk1) INCLUDE (hash, entry_id) WHERE active;
CREATE INDEX IF NOT EXISTS framed_dhash_bank_hashes_chunk2
    ON framed_dhash_bank_hashes (bank_id, chunk2) INCLUDE (hash, entry_id) WHERE active;
INSERT INTO hash_kinds (name, bits, indexed, default_radius, confirmed_by, image_table,
                        image_key, bank_table, bank_key, hash_column, chunk_prefix,
                        searched_with)
VALUES ('framed_dhash', 64, true, 8, NULL, 'framed_dhash_image_hashes', 'image_id',
        'framed_dhash_bank_hashes', 'entry_id', 'hash', 'chunk', 'dhash')
ON CONFLICT (name) DO NOTHING;

-- Where the picture inside the frame sits, as shares of the image's width and height (the
-- same at any scale): one row per framed image or flagged picture.
CREATE TABLE IF NOT EXISTS image_frames (
    image_id    bigint PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    box_left    real NOT NULL,
    box_top     real NOT NULL,
    box_right   real NOT NULL,
    box_bottom  real NOT NULL,
    CHECK (0 <= box_left AND box_left < box_right AND box_right <= 1
           AND 0 <= box_top AND box_top < box_bottom AND box_bottom <= 1)
);
CREATE TABLE IF NOT EXISTS bank_entry_frames (
    entry_id    bigint PRIMARY KEY REFERENCES bank_entries (id) ON DELETE CASCADE,
    box_left    real NOT NULL,
    box_top     real NOT NULL,
    box_right   real NOT NULL,
    box_bottom  real NOT NULL,
    CHECK (0 <= box_left AND box_left < box_right AND box_right <= 1
           AND 0 <= box_top AND box_top < box_bottom AND box_bottom <= 1)
);
