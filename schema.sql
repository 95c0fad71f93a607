-- Lookalike database schema: the contract shared by the crawler, the web site and psql users.
--
-- Two parts. "Tables" is the state that the numbered migrations in lookalike/migrations/ build,
-- one file each, applied once (a test checks that both give the same catalog). "Functions and
-- views" is not in migrations: whenever its text changes, `lookalike migrate` (and every program
-- on first use) drops the functions and views it made before and creates these, in one
-- transaction. Running this whole file with psql on an empty database gives the same schema.
-- Needs PostgreSQL >= 14 (bit_count) and no extension.
--
-- Hashes are 64-bit perceptual hashes stored as bigint with the same bits as the 16 hex digits
-- `lookalike hash` prints (imagehash's bit order): ('x' || hex)::bit(64)::bigint.

-- Tables ---------------------------------------------------------------------------------------

-- One row per distinct image content (SHA-256 of the bytes).
CREATE TABLE IF NOT EXISTS images (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256      text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    dhash       bigint NOT NULL,
    phash       bigint NOT NULL,
    width       integer NOT NULL CHECK (width > 0),
    height      integer NOT NULL CHECK (height > 0),
    format      text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    -- Multi-index hashing: dhash cut into three chunks (21 + 21 + 22 bits). Any hash within
    -- distance r of a query has some chunk within a small radius of the query's chunk
    -- (pigeonhole), so similar_images() probes only those chunk values through the b-tree
    -- indexes below, then re-checks the full distance.
    dhash_chunk0 integer GENERATED ALWAYS AS (((dhash >> 43) & 2097151)::integer) STORED,
    dhash_chunk1 integer GENERATED ALWAYS AS (((dhash >> 22) & 2097151)::integer) STORED,
    dhash_chunk2 integer GENERATED ALWAYS AS ((dhash & 4194303)::integer) STORED
);

-- Covering indexes: a probe reads id and dhash from the index alone (index-only scan).
CREATE INDEX IF NOT EXISTS images_dhash_chunk0 ON images (dhash_chunk0) INCLUDE (dhash, id);
CREATE INDEX IF NOT EXISTS images_dhash_chunk1 ON images (dhash_chunk1) INCLUDE (dhash, id);
CREATE INDEX IF NOT EXISTS images_dhash_chunk2 ON images (dhash_chunk2) INCLUDE (dhash, id);

-- A page an image was seen on: a web page for crawled images, a folder for indexed files.
CREATE TABLE IF NOT EXISTS pages (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url         text NOT NULL UNIQUE,
    domain      text,
    title       text,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pages_domain ON pages (domain);

-- Image x page x image URL: seeing it again moves last_seen, nothing else.
CREATE TABLE IF NOT EXISTS sightings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    image_id    bigint NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    page_id     bigint NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    image_url   text NOT NULL,
    alt_text    text,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (image_id, page_id, image_url)
);
CREATE INDEX IF NOT EXISTS sightings_page_id ON sightings (page_id);

-- A small WebP of each image, kept so results can show what matched after the source is gone.
CREATE TABLE IF NOT EXISTS thumbnails (
    image_id    bigint PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    webp        bytea NOT NULL
);

-- Every bit pattern of up to 4 set bits within 22 bits, with its weight: XOR-ing a chunk with
-- the masks of weight <= k lists the chunk values within distance k, for the MIH probes.
CREATE TABLE IF NOT EXISTS hash_flip_masks (
    mask    integer PRIMARY KEY,
    weight  smallint NOT NULL
);
CREATE INDEX IF NOT EXISTS hash_flip_masks_weight ON hash_flip_masks (weight, mask);

INSERT INTO hash_flip_masks (mask, weight)
WITH RECURSIVE combos (mask, weight, top_bit) AS (
    SELECT 0, 0, -1
    UNION ALL
    SELECT c.mask | (1 << b), c.weight + 1, b
    FROM combos c, generate_series(0, 21) AS b
    WHERE b > c.top_bit AND c.weight < 4
)
SELECT mask, weight FROM combos
WHERE NOT EXISTS (SELECT 1 FROM hash_flip_masks)
ON CONFLICT (mask) DO NOTHING;

-- Crawler bookkeeping
-- One row per crawl. `key` identifies the command (seeds + scope): running the same command
-- again resumes the crawl that has not finished instead of starting over.
CREATE TABLE IF NOT EXISTS crawls (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key            text NOT NULL,
    seeds          text[] NOT NULL,
    settings       jsonb NOT NULL DEFAULT '{}',
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    outcome        text,
    pages          bigint NOT NULL DEFAULT 0,
    images_seen    bigint NOT NULL DEFAULT 0,
    new_images     bigint NOT NULL DEFAULT 0,
    new_sightings  bigint NOT NULL DEFAULT 0,
    errors         jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS crawls_one_open_per_key ON crawls (key) WHERE finished_at IS NULL;

-- The crawl frontier: every URL a crawl decided to fetch, and whether it is done. PostgreSQL,
-- not the crawler's memory, is the record of what is done, so a killed crawl resumes exactly.
CREATE TABLE IF NOT EXISTS crawl_requests (
    crawl_id  bigint NOT NULL REFERENCES crawls (id) ON DELETE CASCADE,
    url       text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('page', 'image')),
    depth     integer NOT NULL DEFAULT 0,
    done_at   timestamptz,
    sha256    text,  -- images: the content fetched, to record later sightings of the same URL
    error     text,  -- the kind of failure, when it failed
    PRIMARY KEY (crawl_id, url)
);
CREATE INDEX IF NOT EXISTS crawl_requests_pending ON crawl_requests (crawl_id) WHERE done_at IS NULL;

-- Which pages of a crawl use which image URL (with alt text): joined with the fetched image
-- to record sightings, whichever of the page and the image is written first.
CREATE TABLE IF NOT EXISTS crawl_image_refs (
    crawl_id    bigint NOT NULL REFERENCES crawls (id) ON DELETE CASCADE,
    image_url   text NOT NULL,
    page_url    text NOT NULL,
    page_title  text,
    alt_text    text,
    PRIMARY KEY (crawl_id, image_url, page_url)
);

-- Moderation banks
--
-- A bank is a named list of flagged fingerprints (one per purpose: banned, copyright…).
-- Uploads are checked against the active entries; disabling an entry (a false positive) keeps
-- its history. Radii are per bank; the defaults come from `lookalike bench radius` and
-- `lookalike bench check` (docs/benchmarks.md): dHash <= 8 found 99.3% of resized,
-- re-compressed, grayscale and bordered copies of real photos (every single change; only
-- all four at once went further) with no unrelated pair closer than 13, and checks a 1M-entry
-- bank about 4x faster than radius 10; a pHash within 12 (when both sides have one) confirms it.
CREATE TABLE IF NOT EXISTS banks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- MIH probes reach 14 bits; unrelated photos start at about 13.
    dhash_radius  integer NOT NULL DEFAULT 8 CHECK (dhash_radius BETWEEN 0 AND 14),
    phash_radius  integer NOT NULL DEFAULT 12 CHECK (phash_radius BETWEEN 0 AND 64),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One flagged fingerprint. It need not have been crawled: flagged from a file, an image in
-- the database (image_id) or a raw dHash (phash NULL: nothing to confirm with).
CREATE TABLE IF NOT EXISTS bank_entries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bank_id      bigint NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
    dhash        bigint NOT NULL,
    phash        bigint,
    sha256       text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    image_id     bigint REFERENCES images (id) ON DELETE SET NULL,
    thumbnail    bytea,  -- small WebP, so moderators see what was flagged
    reason       text,
    flagged_by   text NOT NULL,
    flagged_at   timestamptz NOT NULL DEFAULT now(),
    active       boolean NOT NULL DEFAULT true,
    disabled_by  text,
    disabled_at  timestamptz,
    CHECK (active = (disabled_at IS NULL)),
    -- the same multi-index hashing chunks as images, probed by hash_chunk_probes()
    dhash_chunk0 integer GENERATED ALWAYS AS (((dhash >> 43) & 2097151)::integer) STORED,
    dhash_chunk1 integer GENERATED ALWAYS AS (((dhash >> 22) & 2097151)::integer) STORED,
    dhash_chunk2 integer GENERATED ALWAYS AS ((dhash & 4194303)::integer) STORED
);

-- Covering partial indexes over active entries: a check reads only the index, one probe per
-- chunk and bank; disabled entries drop out of them.
CREATE INDEX IF NOT EXISTS bank_entries_dhash_chunk0
    ON bank_entries (bank_id, dhash_chunk0) INCLUDE (dhash, phash, id) WHERE active;
CREATE INDEX IF NOT EXISTS bank_entries_dhash_chunk1
    ON bank_entries (bank_id, dhash_chunk1) INCLUDE (dhash, phash, id) WHERE active;
CREATE INDEX IF NOT EXISTS bank_entries_dhash_chunk2
    ON bank_entries (bank_id, dhash_chunk2) INCLUDE (dhash, phash, id) WHERE active;
-- Flagging one fingerprint twice (two moderators at once) leaves one active entry.
CREATE UNIQUE INDEX IF NOT EXISTS bank_entries_active_fingerprint
    ON bank_entries (bank_id, dhash, (coalesce(phash, 0))) WHERE active;
CREATE INDEX IF NOT EXISTS bank_entries_listing ON bank_entries (bank_id, id DESC);

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

-- Local features (0003): mirrored, turned, cropped, framed and captioned copies.
-- ORB features of an image (lookalike.features.orb): a 5-byte header, then 4 bytes of
-- position and 22 of descriptor per feature, 100 features at most (2,605 bytes; rows written
-- by the release of 0003 keep 32 of descriptor, 3,605 bytes, and are read as they are).
CREATE TABLE IF NOT EXISTS image_features (
    image_id  bigint PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    features  bytea NOT NULL
);
-- Kept in the row (MAIN), three rows to a page: out of line (TOAST) they took more pages.
ALTER TABLE image_features ALTER COLUMN features SET STORAGE MAIN;

-- The same, for a flagged picture of a moderation bank.
CREATE TABLE IF NOT EXISTS bank_entry_features (
    entry_id  bigint PRIMARY KEY REFERENCES bank_entries (id) ON DELETE CASCADE,
    features  bytea NOT NULL
);
-- A flagged picture keeps more features (10.4 KB for 400): out of line, and not run through a compressor
-- (descriptors are noise to it).
ALTER TABLE bank_entry_features ALTER COLUMN features SET STORAGE EXTERNAL;

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

-- Functions and views --------------------------------------------------------------------------

-- Number of differing bits between two 64-bit hashes.
CREATE OR REPLACE FUNCTION hamming(a bigint, b bigint) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN bit_count(int8send(a # b))::integer;

-- 16 hex digits (as printed by `lookalike hash`) -> the bigint stored in images.dhash.
CREATE OR REPLACE FUNCTION hash_from_hex(hex text) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
    IF hex !~ '^[0-9a-fA-F]{16}$' THEN
        RAISE EXCEPTION 'not a 64-bit hash: % (expected 16 hex digits)', hex
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN ('x' || hex)::bit(64)::bigint;
END
$$;

-- The bigint in images.dhash -> the 16 hex digits people read.
CREATE OR REPLACE FUNCTION hash_to_hex(hash bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN lpad(to_hex(hash), 16, '0');

-- Multi-index hashing (MIH). A hash is cut into chunks, each indexed by a b-tree; by the
-- pigeonhole principle any hash within r bits of a query has some chunk i within k_i bits of
-- the query's chunk i whenever the sum of (k_i + 1) is at least r + 1. So a search probes each
-- chunk's neighbouring values through its index (k_i = -1: not probed), then re-checks the
-- full distance: exact, and sub-linear.

-- The chunk widths for a bits-long hash: as few chunks as keep each within the 22 bits of
-- hash_flip_masks, as even as possible, the wider ones last (64 bits -> 21, 21, 22).
CREATE OR REPLACE FUNCTION hash_chunk_layout(bits integer) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    chunks  constant integer := ceil(bits / 22.0);
    layout  integer[] := '{}';
BEGIN
    FOR i IN 0 .. chunks - 1 LOOP
        layout := layout || (bits / chunks + (i >= chunks - bits % chunks)::integer);
    END LOOP;
    RETURN layout;
END
$$;

-- Chunk number `chunk` (0 = the most significant) of a hash cut by `layout`.
CREATE OR REPLACE FUNCTION hash_chunk(hash bigint, layout integer[], chunk integer)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    shift   integer := 0;
BEGIN
    FOR i IN chunk + 2 .. cardinality(layout) LOOP
        shift := shift + layout[i];
    END LOOP;
    RETURN ((hash >> shift) & ((1::bigint << layout[chunk + 1]) - 1))::integer;
END
$$;

-- The values within `radius` bits of a `width`-bit chunk value: the values a probe reads.
CREATE OR REPLACE FUNCTION hash_chunk_neighbours(chunk_value integer, width integer, radius integer)
RETURNS integer[]
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
BEGIN
    RETURN ARRAY(SELECT chunk_value # m.mask FROM hash_flip_masks m
                 WHERE m.weight <= radius AND m.mask < (1 << width));
END
$$;

-- How to split radius max_distance over the chunks of `layout`. Among the splits that cover
-- it, this picks the cheapest: probing a chunk costs one b-tree descent per neighbouring value
-- (sum of C(width, j) for j <= k) plus the rows found, estimated from densities[i], the rows
-- expected per value of chunk i. Real hashes are skewed, so a chunk whose values are crowded
-- should get a small radius and a sparse one a large one. cost is in index rows read, for
-- comparison with a full scan. Each chunk's radius is at most 4 (hash_flip_masks).
CREATE OR REPLACE FUNCTION hash_radius_split(
    max_distance integer, layout integer[], densities float8[],
    OUT radii integer[], OUT cost float8)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    chunks      constant integer := cardinality(layout);
    descent     constant float8 := 20;  -- one b-tree descent costs about 20 index rows read
    pad         constant integer := 3 - chunks;  -- fewer chunks: the first ones are absent
    near        float8[] := '{}';  -- near[6 * (i - 1) + k + 2]: values within k bits, k = -1 .. 4
    density     float8[] := '{}';
    w           float8;
    c           integer;
    split_cost  float8;
BEGIN
    IF chunks NOT BETWEEN 1 AND 3 OR max_distance NOT BETWEEN 0 AND 5 * chunks - 1 THEN
        RAISE EXCEPTION 'max_distance must be 0 to % for a chunk probe, got %',
            5 * chunks - 1, max_distance USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 1 .. 3 LOOP  -- sums of C(width, j) for j <= k
        w := coalesce(layout[i - pad], 0);
        near := near || ARRAY[0, 1, 1 + w, 1 + w + w * (w - 1) / 2,
                              1 + w + w * (w - 1) / 2 + w * (w - 1) * (w - 2) / 6,
                              1 + w + w * (w - 1) / 2 + w * (w - 1) * (w - 2) / 6
                                + w * (w - 1) * (w - 2) * (w - 3) / 24];
        density := density || coalesce(densities[i - pad], 0);
    END LOOP;
    -- the first chunks' radii in -1 .. 4 (the first varies slowest, so ties go to small radii
    -- on the first chunks); the last chunk takes the least radius that still covers
    FOR a IN -1 .. CASE WHEN chunks > 2 THEN 4 ELSE -1 END LOOP
        FOR b IN -1 .. CASE WHEN chunks > 1 THEN 4 ELSE -1 END LOOP
            c := greatest(max_distance - a - b - 2, -1);
            CONTINUE WHEN c > 4;
            split_cost := near[a + 2] * (descent + density[1])
                          + near[b + 8] * (descent + density[2])
                          + near[c + 14] * (descent + density[3]);
            IF cost IS NULL OR split_cost < cost THEN
                cost := split_cost;
                radii := (ARRAY[a, b, c])[4 - chunks:3];
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- Rows of a hash kind's table (images, or bank entries with `bank` set) whose hash is within
-- max_distance bits of query, found by probing each chunk's index within `radii` (-1: that
-- chunk is not probed). Exact whenever the sum of (radii[i] + 1) is at least max_distance + 1.
-- Each kind has its own probe functions, made from its hash_kinds row by
-- hash_kind_create_functions() below; this calls the one for `kind`.
CREATE OR REPLACE FUNCTION hash_kind_probe(
    kind text, query bigint, max_distance integer, radii integer[], bank bigint DEFAULT NULL)
RETURNS TABLE (id bigint, hash bigint, distance integer)
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    PERFORM hash_kind(kind, searchable => true);  -- a clear error for an unknown kind
    RETURN QUERY EXECUTE format('SELECT * FROM %I($1, $2, $3, $4)',
                                format('hash_probe_%s_%s', kind, CASE WHEN bank IS NULL
                                       THEN 'images' ELSE 'bank' END))
        USING query, max_distance, radii, bank;
END
$$;

-- A searchable kind's own functions, with its tables and chunk columns written out, so their
-- plans are kept for the session like any static PL/pgSQL statement's (text run with EXECUTE
-- is planned on every call, which folds and estimates thousands of probe values):
--   hash_probe_<kind>_images(query, max_distance, radii, bank) and hash_probe_<kind>_bank(…),
--   the probes of hash_kind_probe(); hash_density_<kind>(query), the rows sharing each of the
--   query's chunk values (up to 10,000), for hash_kind_radii(); and
--   hash_bank_matches_<kind>(…), one bank's entries matching by the bank rule, for
--   bank_hash_matches().
-- Run for every searchable kind at the end of this file, which is applied again after every
-- migration, so a kind's migration only has to make its tables and its hash_kinds row.
CREATE OR REPLACE FUNCTION hash_kind_create_functions(kind text) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
AS $$
DECLARE
    k           hash_kinds := hash_kind(kind, searchable => true);
    confirmer   hash_kinds;
    layout      integer[] := hash_chunk_layout(k.bits);
    target      record;
    probes      text;
    branches    text;
    counts      text;
BEGIN
    IF k.confirmed_by IS NOT NULL THEN
        confirmer := hash_kind(k.confirmed_by);
    END IF;
    SELECT string_agg(format('c%s integer[] := hash_chunk_neighbours('
                             'hash_chunk(query, %L, %s), %s, coalesce(radii[%s], -1));',
                             i - 1, layout, i - 1, layout[i], i), E'\n    ' ORDER BY i),
           string_agg(format('(SELECT count(*) FROM (SELECT FROM %I t WHERE t.%I = '
                             'hash_chunk(query, %L, %s) LIMIT 10000) AS n)',
                             k.image_table, k.chunk_prefix || (i - 1), layout, i - 1),
                      ', ' ORDER BY i)
    INTO probes, counts
    FROM generate_series(1, cardinality(layout)) AS i;
    FOR target IN
        SELECT * FROM (VALUES ('images', k.image_table, k.image_key, ''),
                              ('bank', k.bank_table, k.bank_key,
                               ' AND t.active AND t.bank_id = bank')) AS v (name, tab, key, filter)
    LOOP
        SELECT string_agg(format('SELECT t.%I, t.%I FROM %I t WHERE t.%I = ANY (c%s)%s',
                                 target.key, k.hash_column, target.tab,
                                 k.chunk_prefix || (i - 1), i - 1, target.filter),
                          E'\n            UNION ' ORDER BY i)
        INTO branches
        FROM generate_series(1, cardinality(layout)) AS i;
        -- dropped first, so that the function made is a new object (migrate records those)
        EXECUTE format('DROP FUNCTION IF EXISTS %I(bigint, integer, integer[], bigint)',
                       format('hash_probe_%s_%s', kind, target.name));
        EXECUTE format($body$
CREATE FUNCTION %I(query bigint, max_distance integer, radii integer[], bank bigint)
RETURNS TABLE (id bigint, hash bigint, distance integer)
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $probe$
DECLARE
    %s
BEGIN
    RETURN QUERY
        SELECT u.i, u.h, hamming(u.h, query)
        FROM (
            %s
        ) AS u (i, h)
        WHERE hamming(u.h, query) <= max_distance;
END
$probe$
$body$, format('hash_probe_%s_%s', kind, target.name), probes, branches);
    END LOOP;
    EXECUTE format('DROP FUNCTION IF EXISTS %I(bigint)', format('hash_density_%s', kind));
    EXECUTE format($body$
CREATE FUNCTION %I(query bigint) RETURNS float8[]
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $density$
BEGIN
    RETURN ARRAY[%s]::float8[];
END
$density$
$body$, format('hash_density_%s', kind), counts);
    EXECUTE format('DROP FUNCTION IF EXISTS %I(bigint, bigint, bigint, text, integer, integer, '
                   'integer[])', format('hash_bank_matches_%s', kind));
    EXECUTE format($body$
CREATE FUNCTION %I(
    query bigint, confirm_query bigint, in_bank bigint, in_bank_name text, radius integer,
    confirm_radius integer, radii integer[])
RETURNS TABLE (entry_id bigint, bank text, distance integer, reason text,
               flagged_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $matches$
BEGIN
    RETURN QUERY
        SELECT e.id, in_bank_name, p.distance, e.reason, e.flagged_at
        FROM %I(query, radius, radii, in_bank) AS p
        JOIN bank_entries e ON e.id = p.id%s
        WHERE bank_rule_matches(p.distance, %s, radius, confirm_radius);
END
$matches$
$body$, format('hash_bank_matches_%s', kind), format('hash_probe_%s_bank', kind),
        CASE WHEN confirmer.name IS NULL THEN '' ELSE format(
            E'\n        LEFT JOIN %I c ON c.%I = e.id', confirmer.bank_table, confirmer.bank_key) END,
        CASE WHEN confirmer.name IS NULL THEN 'NULL'
             ELSE format('hamming(c.%I, confirm_query)', confirmer.hash_column) END);
END
$$;

-- The hash_kinds row of `kind`, or an error naming the kinds there are.
CREATE OR REPLACE FUNCTION hash_kind(kind text, searchable boolean DEFAULT false)
RETURNS hash_kinds
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    result  hash_kinds;
BEGIN
    SELECT * INTO result FROM hash_kinds h WHERE h.name = kind AND (h.indexed OR NOT searchable);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown %hash kind %: expected one of %',
            CASE WHEN searchable THEN 'searchable ' ELSE '' END, quote_literal(kind),
            (SELECT string_agg(h.name, ', ' ORDER BY h.name) FROM hash_kinds h
             WHERE h.indexed OR NOT searchable)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN result;
END
$$;

-- The density-informed radius split for a query against a kind's image hashes: it counts the
-- rows sharing each of the query's chunk values (one index probe per chunk, capped) on top of
-- what a uniform spread would put there, so crowded chunks get small radii and sparse ones
-- large radii. cost is in index rows read; table_rows is the table's size in the same unit.
CREATE OR REPLACE FUNCTION hash_kind_radii(
    kind text, query bigint, max_distance integer,
    OUT radii integer[], OUT cost float8, OUT table_rows float8)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    k           hash_kinds := hash_kind(kind, searchable => true);
    layout      integer[] := hash_chunk_layout(k.bits);
    densities   float8[];
    split       record;
BEGIN
    -- the planner's estimate: rows per page at the last ANALYZE times the pages there are now
    SELECT CASE WHEN c.reltuples > 0 AND c.relpages > 0
                THEN c.reltuples / c.relpages * pg_relation_size(c.oid)
                     / current_setting('block_size')::float8
                ELSE pg_relation_size(c.oid) / 150.0 END  -- an images row takes ~150 bytes
    INTO table_rows FROM pg_class c WHERE c.oid = k.image_table::regclass;
    EXECUTE format('SELECT %I($1)', format('hash_density_%s', kind)) INTO densities USING query;
    FOR i IN 1 .. cardinality(layout) LOOP  -- on top of what a uniform spread puts there
        densities[i] := densities[i] + table_rows / 2 ^ layout[i];
    END LOOP;
    split := hash_radius_split(max_distance, layout, densities);
    radii := split.radii;
    cost := split.cost;
END
$$;

-- Images whose `kind` hash is within max_distance bits of query, best first. Exact (the same
-- answer as a full scan) and sub-linear: multi-index hashing with the density-informed split
-- of hash_kind_radii(). When probing would cost more than reading every row (a small table,
-- or a radius the chunk probes cannot reach) it scans instead.
CREATE OR REPLACE FUNCTION similar_hashes(kind text, query bigint, max_distance integer)
RETURNS TABLE (image_id bigint, distance integer)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    k       hash_kinds := hash_kind(kind, searchable => true);
    split   record;
BEGIN
    IF max_distance < 0 THEN
        RAISE EXCEPTION 'max_distance must be >= 0, got %', max_distance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_distance < 5 * cardinality(hash_chunk_layout(k.bits)) THEN
        split := hash_kind_radii(kind, query, max_distance);
        IF split.cost <= split.table_rows THEN
            RETURN QUERY
                SELECT p.id, p.distance
                FROM hash_kind_probe(kind, query, max_distance, split.radii) AS p
                ORDER BY 2, 1;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT t.%1$I, hamming(t.%2$I, $1) FROM %3$I t WHERE hamming(t.%2$I, $1) <= $2'
        ' ORDER BY 2, 1', k.image_key, k.hash_column, k.image_table)
        USING query, max_distance;
END
$$;

-- Images whose dHash is within max_distance bits of query, best first: similar_hashes for
-- the default kind, by its hash as a bigint or as the 16 hex digits `lookalike hash` prints.
CREATE OR REPLACE FUNCTION similar_images(query bigint, max_distance integer)
RETURNS TABLE (image_id bigint, distance integer)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$ BEGIN RETURN QUERY SELECT * FROM similar_hashes('dhash', query, max_distance); END $$;

CREATE OR REPLACE FUNCTION similar_images(query text, max_distance integer)
RETURNS TABLE (image_id bigint, distance integer)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT * FROM similar_images(hash_from_hex(query), max_distance) $$;

-- The dHash forms of the functions above, with three named chunk radii, for your own MIH
-- queries on images.dhash_chunk0..2.
CREATE OR REPLACE FUNCTION hash_chunk_radii(
    max_distance integer,
    density0 float8 DEFAULT 0, density1 float8 DEFAULT 0, density2 float8 DEFAULT 0,
    OUT k0 integer, OUT k1 integer, OUT k2 integer, OUT cost float8)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT s.radii[1], s.radii[2], s.radii[3], s.cost
    FROM hash_radius_split(max_distance, hash_chunk_layout(64),
                           ARRAY[density0, density1, density2]) AS s
$$;

CREATE OR REPLACE FUNCTION hash_chunk_probes(
    query bigint, k0 integer, k1 integer, k2 integer,
    OUT chunk0 integer[], OUT chunk1 integer[], OUT chunk2 integer[])
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT hash_chunk_neighbours(hash_chunk(query, l.layout, 0), l.layout[1], k0),
           hash_chunk_neighbours(hash_chunk(query, l.layout, 1), l.layout[2], k1),
           hash_chunk_neighbours(hash_chunk(query, l.layout, 2), l.layout[3], k2)
    FROM (SELECT hash_chunk_layout(64) AS layout) AS l
$$;

-- The same for a radius, split with no knowledge of the data (fewest probes).
CREATE OR REPLACE FUNCTION hash_chunk_probes(
    query bigint, max_distance integer,
    OUT chunk0 integer[], OUT chunk1 integer[], OUT chunk2 integer[])
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT p.* FROM hash_chunk_radii(max_distance) AS r,
                    hash_chunk_probes(query, r.k0, r.k1, r.k2) AS p
$$;

CREATE OR REPLACE FUNCTION image_chunk_radii(
    query bigint, max_distance integer,
    OUT k0 integer, OUT k1 integer, OUT k2 integer, OUT cost float8)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT r.radii[1], r.radii[2], r.radii[3], r.cost
    FROM hash_kind_radii('dhash', query, max_distance) AS r
$$;

CREATE OR REPLACE FUNCTION similar_images_probed(
    query bigint, max_distance integer, k0 integer, k1 integer, k2 integer)
RETURNS TABLE (image_id bigint, distance integer)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
BEGIN
    RETURN QUERY
        SELECT p.id, p.distance
        FROM hash_kind_probe('dhash', query, max_distance, ARRAY[k0, k1, k2]) AS p
        ORDER BY 2, 1;
END
$$;

-- Where each image was seen: one row per sighting, readable without joins.
CREATE OR REPLACE VIEW image_sightings AS
SELECT
    i.id            AS image_id,
    i.sha256,
    hash_to_hex(i.dhash) AS dhash_hex,
    i.width,
    i.height,
    i.format,
    s.image_url,
    s.alt_text,
    p.url           AS page_url,
    p.title         AS page_title,
    p.domain,
    s.first_seen,
    s.last_seen
FROM images i
JOIN sightings s ON s.image_id = i.id
JOIN pages p ON p.id = s.page_id;

-- The bank rule, in one place: a hash within the radius, confirmed by the confirming kind's
-- hash (for dHash, the pHash) when both sides have one.
CREATE OR REPLACE FUNCTION bank_rule_matches(
    distance integer, confirm_distance integer, radius integer, confirm_radius integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN distance <= radius AND coalesce(confirm_distance <= confirm_radius, true);

-- A bank's radius for a kind: its <kind>_radius column (banks.dhash_radius, phash_radius),
-- that of the kind it is searched with (framed_dhash: dhash_radius), or the kind's default.
CREATE OR REPLACE FUNCTION bank_radius(bank banks, kind text) RETURNS integer
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    k   hash_kinds := hash_kind(kind);
BEGIN
    RETURN coalesce((to_jsonb(bank) ->> (kind || '_radius'))::integer,
                    (to_jsonb(bank) ->> (k.searched_with || '_radius'))::integer,
                    k.default_radius);
END
$$;

-- Active entries whose `kind` hash matches query by the bank rule: within max_distance (NULL:
-- each bank's radius), confirmed by confirm_query, the query's hash of the kind that confirms
-- `kind` (NULL: no confirmation). bank_name NULL checks every bank. One chunk probe per bank,
-- planned per bank so the plan is the same whatever the statistics say about the banks table.
-- Add ORDER BY distance for the closest first.
CREATE OR REPLACE FUNCTION bank_hash_matches(
    kind text,
    query bigint,
    confirm_query bigint DEFAULT NULL,
    bank_name text DEFAULT NULL,
    max_distance integer DEFAULT NULL)
RETURNS TABLE (entry_id bigint, bank text, distance integer, reason text,
               flagged_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    k           hash_kinds := hash_kind(kind, searchable => true);
    layout      integer[] := hash_chunk_layout(k.bits);
    b           banks;
    radius      integer;
BEGIN
    FOR b IN SELECT * FROM banks WHERE bank_name IS NULL OR banks.name = bank_name LOOP
        radius := coalesce(max_distance, bank_radius(b, kind));
        RETURN QUERY EXECUTE format('SELECT * FROM %I($1, $2, $3, $4, $5, $6, $7)',
                                    format('hash_bank_matches_%s', kind))
            USING query, confirm_query, b.id, b.name, radius, bank_radius(b, k.confirmed_by),
                  (hash_radius_split(radius, layout,
                                     array_fill(0::float8, ARRAY[cardinality(layout)]))).radii;
    END LOOP;
END
$$;

-- Active entries matching a dHash (confirmed by its pHash, if given): what `lookalike check`
-- and POST /api/check ask. bank_hash_matches for the default kind.
CREATE OR REPLACE FUNCTION bank_matches(
    query_dhash bigint,
    query_phash bigint DEFAULT NULL,
    bank_name text DEFAULT NULL,
    max_distance integer DEFAULT NULL)
RETURNS TABLE (entry_id bigint, bank text, distance integer, reason text,
               flagged_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN QUERY
        SELECT * FROM bank_hash_matches('dhash', query_dhash, query_phash, bank_name, max_distance);
END
$$;

-- Where flagged images, or near copies of them, were seen: one row per sighting of an image
-- matching an active entry by its bank's rule. For example
--   SELECT * FROM flagged_sightings WHERE bank = 'banned' ORDER BY last_seen DESC;
CREATE OR REPLACE VIEW flagged_sightings AS
SELECT
    b.name          AS bank,
    e.id            AS entry_id,
    e.reason,
    e.flagged_at,
    m.distance,
    s.image_id,
    s.sha256,
    s.image_url,
    s.page_url,
    s.page_title,
    s.domain,
    s.first_seen,
    s.last_seen,
    s.alt_text
FROM bank_entries e
JOIN banks b ON b.id = e.bank_id
CROSS JOIN LATERAL similar_images(e.dhash, b.dhash_radius) m
JOIN images i ON i.id = m.image_id
JOIN image_sightings s ON s.image_id = m.image_id
WHERE e.active
  AND bank_rule_matches(m.distance, hamming(i.phash, e.phash), b.dhash_radius, b.phash_radius);

-- Every searchable kind's own probe and density functions (hash_kind_create_functions).
SELECT hash_kind_create_functions(name) FROM hash_kinds WHERE indexed ORDER BY name;
