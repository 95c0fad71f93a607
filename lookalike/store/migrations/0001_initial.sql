-- 0001: the tables, indexes and hash_flip_masks rows of Lookalike 0.1 (commit 6043737).
-- Written with IF NOT EXISTS, like the schema.sql of that release, so on a database that
-- release made it changes nothing and is only recorded in schema_migrations.

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
