-- 0002: hash kinds. Where each kind's hashes live, read by the store and by the search and bank
-- functions (which take the kind as a parameter since this release). dHash and pHash stay in
-- the columns of images and bank_entries they have always had. Idempotent, like 0001, so a
-- database built from schema.sql with psql is only recorded.

-- The kinds of hash images are fingerprinted with (lookalike/kinds) and where each kind's
-- hashes live: columns of images and bank_entries for the built-in dHash and pHash, tables of
-- its own for a plug-in kind (made by its migration: lookalike.store.kind_tables). The
-- search and bank functions below read it, so they serve every kind without naming one.
CREATE TABLE IF NOT EXISTS hash_kinds (
    name            text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,30}$'),
    bits            integer NOT NULL CHECK (bits BETWEEN 1 AND 64),
    indexed         boolean NOT NULL,  -- false: kept to confirm matches, never searched alone
    default_radius  integer NOT NULL CHECK (default_radius >= 0),
    confirmed_by    text REFERENCES hash_kinds (name),  -- the bank rule's confirming kind
    image_table     text NOT NULL,
    image_key       text NOT NULL,  -- the column holding the image id
    bank_table      text NOT NULL,
    bank_key        text NOT NULL,  -- the column holding the bank entry id
    hash_column     text NOT NULL,
    chunk_prefix    text NOT NULL   -- chunk columns are <prefix>0, <prefix>1, ...
);
INSERT INTO hash_kinds (name, bits, indexed, default_radius, confirmed_by, image_table,
                        image_key, bank_table, bank_key, hash_column, chunk_prefix)
VALUES ('phash', 64, false, 12, NULL, 'images', 'id', 'bank_entries', 'id', 'phash', 'phash_chunk'),
       ('dhash', 64, true, 10, 'phash', 'images', 'id', 'bank_entries', 'id', 'dhash', 'dhash_chunk')
ON CONFLICT (name) DO NOTHING;
