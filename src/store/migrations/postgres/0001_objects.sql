-- keyway's control-plane store, PostgreSQL flavour (same tables as the SQLite one). One version
-- counter for the whole store: every write bumps it in its transaction (and NOTIFYs
-- keyway_changes), so instances see a change by reading one row.
CREATE TABLE keyway_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    -- When the last write committed (the writer's clock, RFC 3339 with milliseconds).
    changed_at TEXT NOT NULL
);
INSERT INTO keyway_meta (id, version, changed_at) VALUES (1, 0, '1970-01-01T00:00:00.000Z');

-- Every object (workspace, API key, secret reference, integration, virtual key, config) as a
-- JSON document; its sensitive fields sealed (XChaCha20-Poly1305) in `sealed`.
CREATE TABLE keyway_objects (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    slug TEXT NOT NULL,
    workspace TEXT,
    body TEXT NOT NULL,
    sealed BYTEA,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (kind, id),
    UNIQUE (kind, slug)
);

-- Who changed what, when; before and after with secrets masked.
CREATE TABLE keyway_audit (
    seq BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    kind TEXT NOT NULL,
    slug TEXT NOT NULL,
    workspace TEXT,
    before TEXT,
    after TEXT
);
