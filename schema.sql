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

-- How to split radius max_distance (0-14) over the three chunks. By the pigeonhole principle
-- any hash within r bits of the query has some chunk i within k_i bits of the query's chunk
-- when k0 + k1 + k2 + 3 >= r + 1 (k = -1: that chunk is not probed). Among the splits that
-- satisfy it, this picks the cheapest: probing a chunk costs one b-tree descent per
-- neighbouring value (21 + 21 + 22 bits: sum of C(bits, j) for j <= k) plus the rows found,
-- estimated from density_i, the rows expected per value of chunk i. Real hashes are skewed,
-- so a chunk whose values are crowded should get a small radius and a sparse one a large one.
-- cost is in index rows read, for comparison with a full scan.
CREATE OR REPLACE FUNCTION hash_chunk_radii(
    max_distance integer,
    density0 float8 DEFAULT 0, density1 float8 DEFAULT 0, density2 float8 DEFAULT 0,
    OUT k0 integer, OUT k1 integer, OUT k2 integer, OUT cost float8)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    -- neighbours within k bits, for k = -1 .. 4 (array index k + 2)
    near21      constant integer[] := ARRAY[0, 1, 22, 232, 1562, 7547];
    near22      constant integer[] := ARRAY[0, 1, 23, 254, 1794, 9109];
    descent     constant float8 := 20;  -- one b-tree descent costs about 20 index rows read
    split_cost  float8;
    c           integer;
BEGIN
    IF max_distance NOT BETWEEN 0 AND 14 THEN
        RAISE EXCEPTION 'max_distance must be 0 to 14 for a chunk probe, got %', max_distance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR a IN -1..4 LOOP
        FOR b IN -1..4 LOOP
            c := greatest(max_distance - a - b - 2, -1);  -- the least k2 that still covers r
            CONTINUE WHEN c > 4;
            split_cost := near21[a + 2] * (descent + density0)
                          + near21[b + 2] * (descent + density1)
                          + near22[c + 2] * (descent + density2);
            IF cost IS NULL OR split_cost < cost THEN
                cost := split_cost; k0 := a; k1 := b; k2 := c;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- The chunk values to probe, one array per chunk of the multi-index hashing columns
-- (images.dhash_chunk0..2, bank_entries' likewise), for per-chunk radii k0, k1, k2.
-- The functions on the search path are PL/pgSQL rather than SQL: PostgreSQL < 18 plans a
-- SQL function's body on every call, PL/pgSQL keeps its plans for the session, which saves
-- about 0.3 ms a search (a third of a radius-4 search at 10M rows).
CREATE OR REPLACE FUNCTION hash_chunk_probes(
    query bigint, k0 integer, k1 integer, k2 integer,
    OUT chunk0 integer[], OUT chunk1 integer[], OUT chunk2 integer[])
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
BEGIN
    chunk0 := ARRAY(SELECT ((query >> 43) & 2097151)::integer # m.mask FROM hash_flip_masks m
                    WHERE m.weight <= k0 AND m.mask < 2097152);
    chunk1 := ARRAY(SELECT ((query >> 22) & 2097151)::integer # m.mask FROM hash_flip_masks m
                    WHERE m.weight <= k1 AND m.mask < 2097152);
    chunk2 := ARRAY(SELECT (query & 4194303)::integer # m.mask FROM hash_flip_masks m
                    WHERE m.weight <= k2);
END
$$;

-- The same for a radius, split with no knowledge of the data (fewest probes).
CREATE OR REPLACE FUNCTION hash_chunk_probes(
    query bigint, max_distance integer,
    OUT chunk0 integer[], OUT chunk1 integer[], OUT chunk2 integer[])
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    radii   record := hash_chunk_radii(max_distance);
BEGIN
    SELECT p.chunk0, p.chunk1, p.chunk2 INTO chunk0, chunk1, chunk2
    FROM hash_chunk_probes(query, radii.k0, radii.k1, radii.k2) p;
END
$$;

-- The density-informed radius split for a query against images: it counts the rows sharing
-- each of the query's chunk values (three index probes, capped) on top of what a uniform
-- spread would put there, so crowded chunks get small radii and sparse ones large radii.
CREATE OR REPLACE FUNCTION image_chunk_radii(
    query bigint, max_distance integer,
    OUT k0 integer, OUT k1 integer, OUT k2 integer, OUT cost float8)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    uniform constant float8 := pg_relation_size('images') / 150.0 / 2097152.0;
BEGIN
    SELECT r.k0, r.k1, r.k2, r.cost INTO k0, k1, k2, cost
    FROM hash_chunk_radii(
        max_distance,
        uniform + (SELECT count(*) FROM (SELECT FROM images i WHERE i.dhash_chunk0 =
                   ((query >> 43) & 2097151)::integer LIMIT 10000) n),
        uniform + (SELECT count(*) FROM (SELECT FROM images i WHERE i.dhash_chunk1 =
                   ((query >> 22) & 2097151)::integer LIMIT 10000) n),
        uniform / 2 + (SELECT count(*) FROM (SELECT FROM images i WHERE
                   i.dhash_chunk2 = (query & 4194303)::integer LIMIT 10000) n)) AS r;
END
$$;

-- Images within max_distance bits of query found through the chunk indexes alone: probes the
-- chunk values within radii k0, k1, k2 with index-only scans, then re-checks the full
-- distance. Exact whenever k0 + k1 + k2 + 3 >= max_distance + 1.
CREATE OR REPLACE FUNCTION similar_images_probed(
    query bigint, max_distance integer, k0 integer, k1 integer, k2 integer)
RETURNS TABLE (image_id bigint, distance integer)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    probes  record := hash_chunk_probes(query, k0, k1, k2);
BEGIN
    RETURN QUERY
        SELECT c.id, hamming(c.dhash, query)
        FROM (
            SELECT i.id, i.dhash FROM images i WHERE i.dhash_chunk0 = ANY (probes.chunk0)
            UNION
            SELECT i.id, i.dhash FROM images i WHERE i.dhash_chunk1 = ANY (probes.chunk1)
            UNION
            SELECT i.id, i.dhash FROM images i WHERE i.dhash_chunk2 = ANY (probes.chunk2)
        ) c
        WHERE hamming(c.dhash, query) <= max_distance
        ORDER BY 2, 1;
END
$$;

-- Images whose dHash is within max_distance bits of query, best first. Exact (the same answer
-- as a full scan) and sub-linear: multi-index hashing with the density-informed split of
-- image_chunk_radii(). When probing would cost more than reading every row (a small table, or
-- a radius past 14, where the probes grow past the table) it scans instead.
CREATE OR REPLACE FUNCTION similar_images(query bigint, max_distance integer)
RETURNS TABLE (image_id bigint, distance integer)
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    radii   record;
BEGIN
    IF max_distance < 0 THEN
        RAISE EXCEPTION 'max_distance must be >= 0, got %', max_distance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_distance <= 14 THEN
        radii := image_chunk_radii(query, max_distance);
        -- one row read by a scan costs about one index row; the table is ~150 bytes a row
        IF radii.cost <= pg_relation_size('images') / 150.0 THEN
            RETURN QUERY
                SELECT * FROM similar_images_probed(
                    query, max_distance, radii.k0, radii.k1, radii.k2);
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
        SELECT i.id, hamming(i.dhash, query)
        FROM images i
        WHERE hamming(i.dhash, query) <= max_distance
        ORDER BY 2, 1;
END
$$;

CREATE OR REPLACE FUNCTION similar_images(query text, max_distance integer)
RETURNS TABLE (image_id bigint, distance integer)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$ SELECT * FROM similar_images(hash_from_hex(query), max_distance) $$;

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

-- The bank rule, in one place: a dHash within the radius, confirmed by the pHash when both
-- sides have one.
CREATE OR REPLACE FUNCTION bank_rule_matches(
    dhash_distance integer, phash_distance integer, dhash_radius integer, phash_radius integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN dhash_distance <= dhash_radius AND coalesce(phash_distance <= phash_radius, true);

-- Active entries matching a fingerprint: what `lookalike check` and POST /api/check ask
-- (add ORDER BY distance for the closest first). query_phash NULL (a raw dHash) skips the
-- pHash confirmation, bank_name NULL checks every bank, max_distance NULL uses each bank's
-- dhash_radius. One MIH probe per bank, planned per bank so the plan is the same whatever
-- the statistics say about the banks table.
CREATE OR REPLACE FUNCTION bank_matches(
    query_dhash bigint,
    query_phash bigint DEFAULT NULL,
    bank_name text DEFAULT NULL,
    max_distance integer DEFAULT NULL)
RETURNS TABLE (entry_id bigint, bank text, distance integer, reason text,
               flagged_at timestamptz)
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    b       record;
    radius  integer;
    probes  record;
BEGIN
    FOR b IN SELECT banks.id, banks.name, banks.dhash_radius, banks.phash_radius FROM banks
             WHERE bank_name IS NULL OR banks.name = bank_name
    LOOP
        radius := coalesce(max_distance, b.dhash_radius);
        probes := hash_chunk_probes(query_dhash, radius);
        RETURN QUERY
            SELECT e.id, b.name, c.distance, e.reason, e.flagged_at
            FROM (
                SELECT u.id, hamming(u.dhash, query_dhash) AS distance,
                       hamming(u.phash, query_phash) AS phash_distance
                FROM (
                    SELECT x.id, x.dhash, x.phash FROM bank_entries x
                    WHERE x.active AND x.bank_id = b.id AND x.dhash_chunk0 = ANY (probes.chunk0)
                    UNION
                    SELECT x.id, x.dhash, x.phash FROM bank_entries x
                    WHERE x.active AND x.bank_id = b.id AND x.dhash_chunk1 = ANY (probes.chunk1)
                    UNION
                    SELECT x.id, x.dhash, x.phash FROM bank_entries x
                    WHERE x.active AND x.bank_id = b.id AND x.dhash_chunk2 = ANY (probes.chunk2)
                ) u
                WHERE hamming(u.dhash, query_dhash) <= radius
            ) c
            JOIN bank_entries e ON e.id = c.id
            WHERE bank_rule_matches(c.distance, c.phash_distance, radius, b.phash_radius);
    END LOOP;
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
