"""The SQLite schema: versioned migrations, applied in order at open; never edit a shipped one."""

from __future__ import annotations

# Each entry upgrades the schema by one version; never edit a shipped entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        capture_mode TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '',
        metadata TEXT NOT NULL DEFAULT '{}',
        capture_count INTEGER NOT NULL DEFAULT 0,
        photo_count INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        modified REAL NOT NULL,
        ended REAL
    );
    CREATE INDEX sessions_status_source ON sessions(status, source);
    CREATE TABLE products (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        gtin TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT '',
        brand TEXT NOT NULL DEFAULT '',
        net_content TEXT NOT NULL DEFAULT '',
        ingredients TEXT NOT NULL DEFAULT '',
        nutrition TEXT NOT NULL DEFAULT '{}',
        certifications TEXT NOT NULL DEFAULT '[]',
        country_of_origin TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL DEFAULT '',
        images TEXT NOT NULL DEFAULT '[]',
        completeness INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        modified REAL NOT NULL
    );
    CREATE INDEX products_completeness ON products(completeness);
    CREATE TABLE captures (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        status TEXT NOT NULL,
        capture_type TEXT NOT NULL,
        raw_value TEXT NOT NULL DEFAULT '',
        gtin TEXT NOT NULL DEFAULT '',
        symbology TEXT NOT NULL DEFAULT '',
        symbology_identifier TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        error_message TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        modified REAL NOT NULL,
        processed_at REAL,
        gs1_dl_data TEXT NOT NULL DEFAULT '{}',
        product_id INTEGER REFERENCES products(id),
        uploaded_image_key TEXT NOT NULL DEFAULT '',
        qr_analysis TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        checks TEXT NOT NULL DEFAULT '{}',
        revision INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX captures_session ON captures(session_id, id);
    CREATE INDEX captures_status ON captures(status);
    CREATE INDEX captures_created ON captures(created);
    CREATE INDEX captures_gtin ON captures(gtin);
    CREATE TABLE proposals (
        id INTEGER PRIMARY KEY,
        public_id TEXT NOT NULL UNIQUE,
        capture_id INTEGER NOT NULL REFERENCES captures(id),
        field_name TEXT NOT NULL,
        current_value TEXT NOT NULL DEFAULT '',
        proposed_value TEXT NOT NULL,
        confidence REAL NOT NULL,
        reasoning TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'PENDING',
        created REAL NOT NULL,
        reviewed_at REAL
    );
    CREATE INDEX proposals_capture ON proposals(capture_id);
    CREATE TABLE scan_events (
        id INTEGER PRIMARY KEY,
        capture_id INTEGER NOT NULL UNIQUE REFERENCES captures(id),
        gtin TEXT NOT NULL,
        time REAL NOT NULL,
        device_id TEXT NOT NULL,
        source TEXT NOT NULL,
        site TEXT NOT NULL DEFAULT '',
        lat REAL,
        lon REAL,
        batch TEXT NOT NULL DEFAULT '',
        serial TEXT NOT NULL DEFAULT '',
        expiry TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX scan_events_time ON scan_events(time);
    CREATE INDEX scan_events_gtin_time ON scan_events(gtin, time);
    -- One row per event and destination: 'mqtt', or 'webhook:<name>' for a webhook output.
    CREATE TABLE outbox (
        -- AUTOINCREMENT: an id is never reused after its row is delivered and deleted,
        -- so a drainer's "after id N" cursor never skips a new event.
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        destination TEXT NOT NULL DEFAULT 'mqtt',
        topic TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seq INTEGER,
        payload TEXT NOT NULL,
        created REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        UNIQUE (destination, event_id)
    );
    CREATE INDEX outbox_destination ON outbox(destination, id);
    CREATE TABLE outbox_dead (
        id INTEGER PRIMARY KEY,
        destination TEXT NOT NULL DEFAULT 'mqtt',
        topic TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seq INTEGER,
        payload TEXT NOT NULL,
        created REAL NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        died REAL NOT NULL,
        UNIQUE (destination, event_id)
    );
    -- Image embeddings from the classifier, by capture; a capture applied to a product
    -- becomes one of the product's reference photos for visual resolving.
    CREATE TABLE embeddings (
        capture_id INTEGER PRIMARY KEY REFERENCES captures(id),
        model TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE TABLE reference_photos (
        id INTEGER PRIMARY KEY,
        product_id INTEGER NOT NULL REFERENCES products(id),
        capture_id INTEGER NOT NULL UNIQUE REFERENCES captures(id),
        model TEXT NOT NULL,
        vector BLOB NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX reference_photos_model ON reference_photos(model);
    -- Logged-in web UI sessions (only digests of the cookies are kept).
    CREATE TABLE ui_sessions (
        token_sha256 TEXT PRIMARY KEY,
        csrf_token TEXT NOT NULL,
        password_tag TEXT NOT NULL,
        created REAL NOT NULL,
        last_seen REAL NOT NULL,
        remote TEXT NOT NULL DEFAULT '',
        user_agent TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    """
    -- Delivered MQTT rows are kept for [mqtt] keep_delivered_hours (outbox.replay answers
    -- from them): delivered is when the broker acknowledged the row, NULL while it waits.
    ALTER TABLE outbox ADD COLUMN delivered REAL;
    CREATE INDEX outbox_pending ON outbox(destination, id) WHERE delivered IS NULL;
    CREATE INDEX outbox_delivered ON outbox(delivered) WHERE delivered IS NOT NULL;
    CREATE INDEX outbox_seq ON outbox(destination, seq) WHERE seq IS NOT NULL;
    """,
    # No query reads captures by GTIN (analytics use scan_events): the index only cost a
    # random page written per capture.
    """
    DROP INDEX IF EXISTS captures_gtin;
    """,
    # Security-relevant actions (logins, failed logins, users and roles, API keys, the
    # configuration, catalog imports, backups): who did what, when, from where.
    """
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL DEFAULT 'ok',
        remote TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_log_time ON audit_log(time);
    """,
    # Fewer pages written per capture (SD card wear, docs/benchmarks.md "bench wear"): every
    # b-tree a capture's commit touches costs at least one whole page in the WAL.
    # - outbox: no AUTOINCREMENT (its sqlite_sequence row was one more page a commit) and no
    #   unique (destination, event_id) index (event ids are fresh UUIDv7s; nothing reads by
    #   them). Ids are still never reused: the store takes them from counters 'outbox_id',
    #   on the page the capture seq is already written to. outbox_destination is dropped:
    #   outbox_pending has the same key for what waits, rowid ranges serve the rest. Nor is
    #   outbox_delivered kept (one more page for every PUBACK): rows are in created order by
    #   id, so the prune reads the old ones as a prefix of the table. A waiting row's
    #   delivered is -0.5 instead of NULL: an 8-byte float like the time that replaces it,
    #   so marking a row delivered rewrites its page alone — a record that grows moves the
    #   split of an outbox payload between its page and its overflow chain, and rewrites all.
    # - scan_events: keyed by its capture (no separate unique index) and no index of its
    #   own: an event's time is its capture's created time, so reports find a period on
    #   captures_created and read the events by capture id; (gtin, time) took a page a
    #   commit in the middle of its index.
    # - captures: the status index holds only the captures a list filters out of many
    #   (in progress, FAILED), so a finished capture does not touch it; the count of each
    #   status is kept by triggers in counters ('captures:<STATUS>'), on the page the commit
    #   writes anyway. A session's captures are found in the range of row ids its first and
    #   last capture span (kept by a trigger on the session row, which each capture's commit
    #   updates anyway) instead of by the captures_session index.
    """
    INSERT INTO counters (name, value)  -- counted on captures_status, before it goes
        SELECT 'captures:' || status, COUNT(*) FROM captures GROUP BY status;
    DROP INDEX captures_status;
    CREATE INDEX captures_unfinished ON captures(status)
        WHERE status IN ('PENDING', 'LOOKING_UP', 'ENRICHING', 'RESOLVING', 'FAILED');
    CREATE TRIGGER captures_count_insert AFTER INSERT ON captures BEGIN
        INSERT INTO counters (name, value) VALUES ('captures:' || NEW.status, 1)
        ON CONFLICT(name) DO UPDATE SET value = value + 1;
    END;
    CREATE TRIGGER captures_count_status AFTER UPDATE OF status ON captures
    WHEN OLD.status IS NOT NEW.status BEGIN
        UPDATE counters SET value = value - 1 WHERE name = 'captures:' || OLD.status;
        INSERT INTO counters (name, value) VALUES ('captures:' || NEW.status, 1)
        ON CONFLICT(name) DO UPDATE SET value = value + 1;
    END;
    CREATE TRIGGER captures_count_delete AFTER DELETE ON captures BEGIN
        UPDATE counters SET value = value - 1 WHERE name = 'captures:' || OLD.status;
    END;
    ALTER TABLE sessions ADD COLUMN first_capture_id INTEGER;
    ALTER TABLE sessions ADD COLUMN last_capture_id INTEGER;
    UPDATE sessions SET
        first_capture_id = (SELECT MIN(id) FROM captures WHERE session_id = sessions.id),
        last_capture_id = (SELECT MAX(id) FROM captures WHERE session_id = sessions.id);
    DROP INDEX captures_session;
    CREATE TRIGGER captures_session_range AFTER INSERT ON captures BEGIN
        UPDATE sessions SET first_capture_id = COALESCE(first_capture_id, NEW.id),
            last_capture_id = MAX(COALESCE(last_capture_id, 0), NEW.id)
        WHERE id = NEW.session_id;
    END;
    CREATE TABLE outbox_new (
        id INTEGER PRIMARY KEY,
        destination TEXT NOT NULL DEFAULT 'mqtt',
        topic TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seq INTEGER,
        payload TEXT NOT NULL,
        created REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        delivered REAL NOT NULL DEFAULT -0.5
    );
    INSERT INTO outbox_new (id, destination, topic, event_id, seq, payload, created, attempts,
        last_error, delivered)
    SELECT id, destination, topic, event_id, seq, payload, created, attempts, last_error,
        COALESCE(delivered, -0.5) FROM outbox ORDER BY id;
    INSERT INTO counters (name, value) VALUES ('outbox_id', MAX(
        COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),
        COALESCE((SELECT MAX(id) FROM outbox), 0)))
    ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value);
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_pending ON outbox(destination, id) WHERE delivered < 0;
    CREATE INDEX outbox_seq ON outbox(destination, seq) WHERE seq IS NOT NULL;
    CREATE TABLE scan_events_new (
        capture_id INTEGER PRIMARY KEY REFERENCES captures(id),
        gtin TEXT NOT NULL,
        time REAL NOT NULL,
        device_id TEXT NOT NULL,
        source TEXT NOT NULL,
        site TEXT NOT NULL DEFAULT '',
        lat REAL,
        lon REAL,
        batch TEXT NOT NULL DEFAULT '',
        serial TEXT NOT NULL DEFAULT '',
        expiry TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO scan_events_new (capture_id, gtin, time, device_id, source, site, lat, lon,
        batch, serial, expiry)
    SELECT capture_id, gtin, time, device_id, source, site, lat, lon, batch, serial, expiry
    FROM scan_events ORDER BY capture_id;
    DROP TABLE scan_events;
    ALTER TABLE scan_events_new RENAME TO scan_events;
    """,
)


SCHEMA_VERSION = len(MIGRATIONS)
