"""How the PostgreSQL transport lays out its schema: tables, functions, names, header bytes.

One schema per application (``?schema=``) holds:

============  =====================================================================
``log``       every message published, in ``seq`` order (deleted once no group needs it)
``cursors``   one row per group and topic (or pattern, kept as a regular expression)
``pending``   one row per message a group has not yet acked: its lease, attempts, delay
``members``   per cursor, the live subscriptions sharing its keys (see ``kit.sharing``)
``dead_letters``  the dead-letter store's rows
``publish()``  appends a batch to ``log`` and fans it out to ``pending``, then NOTIFYs
``open_cursor()``  creates a group's cursor, starting with the history still kept
============  =====================================================================

A headers value is a JSON object of strings (NULL for none); the other columns are the
message's own. :class:`Schema` names it all for statements.
"""

from __future__ import annotations

import re
import zlib

import msgspec

__all__ = ["SETTINGS", "Schema", "encode_headers", "topic_regex"]

SETTINGS = {"enable_bitmapscan": "off", "plan_cache_mode": "force_custom_plan", "jit": "off"}
"""For the pool's connections, which run only this package's short index lookups: the statistics
of a fast-changing queue table are mostly stale, and a bitmap scan or generic plan chosen on them
reads and sorts the whole queue for every claim. (``fillfactor`` leaves room for lease updates
to stay on their page.)"""

encode_headers = msgspec.json.Encoder().encode

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.log (
    seq bigserial PRIMARY KEY,
    topic text NOT NULL,
    id text NOT NULL,
    type text NOT NULL,
    key text,
    headers bytea,
    data bytea NOT NULL,
    time float8 NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.cursors (
    id serial PRIMARY KEY,
    grp text NOT NULL,
    topic text NOT NULL,
    pattern text NOT NULL,
    UNIQUE (grp, topic)
);
-- Only when missing (a schema of an earlier version): ALTER TABLE locks the table whole even
-- when the column exists, which deadlocks with the publishers of a running transport.
DO $$ BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = '{s}.cursors'::regclass AND attname = 'active_at' AND NOT attisdropped
    ) THEN
        ALTER TABLE {s}.cursors ADD COLUMN active_at float8;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS {s}.pending (
    cursor int NOT NULL,
    seq bigint NOT NULL,
    key text,
    attempts int NOT NULL DEFAULT 0,
    available_at float8 NOT NULL DEFAULT 0,
    lease_until float8,
    owner text,
    PRIMARY KEY (cursor, seq)
) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS pending_key ON {s}.pending (cursor, key, seq) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.members (
    cursor int NOT NULL,
    owner text NOT NULL,
    until float8 NOT NULL,
    PRIMARY KEY (cursor, owner)
);
CREATE TABLE IF NOT EXISTS {s}.dead_letters (
    n bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    message_id text NOT NULL,
    topic text NOT NULL,
    type text NOT NULL,
    grp text NOT NULL,
    data bytea NOT NULL,
    headers bytea NOT NULL,
    key text,
    error_type text NOT NULL,
    error_message text NOT NULL,
    traceback text NOT NULL,
    attempts int NOT NULL,
    failed_at float8 NOT NULL,
    published_at float8 NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_topic ON {s}.dead_letters (topic, n);

-- Publishing fans a message out to the pending rows of every cursor whose pattern matches. The
-- shared lock keeps cursor creation (exclusive: it copies the history) from missing a message
-- committed meanwhile; each statement of this volatile function sees the cursors as of after it.
CREATE OR REPLACE FUNCTION {s}.publish(
    p_topic text, p_ids text[], p_types text[], p_keys text[], p_headers bytea[],
    p_data bytea[], p_times float8[], p_channel text
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({lock});
    WITH m AS (
        INSERT INTO {s}.log (topic, id, type, key, headers, data, time)
        SELECT p_topic, u.id, u.type, u.key, u.headers, u.data, u.time
        FROM unnest(p_ids, p_types, p_keys, p_headers, p_data, p_times)
            WITH ORDINALITY AS u (id, type, key, headers, data, time, n)
        ORDER BY u.n
        RETURNING seq, key
    )
    INSERT INTO {s}.pending (cursor, seq, key)
    SELECT c.id, m.seq, m.key FROM m CROSS JOIN {s}.cursors AS c WHERE p_topic ~ c.pattern;
    PERFORM pg_notify(p_channel, left(p_topic, 1000));
END $$;

CREATE OR REPLACE FUNCTION {s}.open_cursor(p_grp text, p_topic text, p_pattern text)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    cid int;
BEGIN
    SELECT id INTO cid FROM {s}.cursors WHERE grp = p_grp AND topic = p_topic;
    IF cid IS NOT NULL THEN
        RETURN cid;
    END IF;
    PERFORM pg_advisory_xact_lock({lock});
    INSERT INTO {s}.cursors (grp, topic, pattern) VALUES (p_grp, p_topic, p_pattern)
    ON CONFLICT (grp, topic) DO NOTHING RETURNING id INTO cid;
    IF cid IS NULL THEN
        SELECT id INTO cid FROM {s}.cursors WHERE grp = p_grp AND topic = p_topic;
        RETURN cid;
    END IF;
    -- A new group starts with the history still kept.
    INSERT INTO {s}.pending (cursor, seq, key)
    SELECT cid, seq, key FROM {s}.log WHERE topic ~ p_pattern;
    RETURN cid;
END $$;
"""


def topic_regex(topic: str) -> str:
    """A PostgreSQL regular expression matching the topics that ``topic`` (maybe a pattern)
    matches: ``*`` one token, ``>`` one or more."""
    tokens = []
    for token in topic.split("."):
        if token == "*":
            tokens.append(r"[^.]+")
        elif token == ">":
            tokens.append(r".+")
        else:
            tokens.append(re.escape(token))
    return "^" + r"\.".join(tokens) + "$"


class Schema:
    """The names of the objects in schema ``name`` (a plain lower-case identifier, checked by
    the options), for statements."""

    __slots__ = ("channel", "lock", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.channel = f"tidings_{name}"
        """What ``publish()`` NOTIFYs."""
        # One advisory lock per schema: publishers share it, cursor creation takes it alone.
        self.lock = zlib.crc32(f"tidings:{name}".encode())

    def sql(self, template: str) -> str:
        """``template`` with ``{s}`` as the schema and ``{lock}`` as the advisory lock key."""
        return template.format(s=f'"{self.name}"', lock=self.lock)

    def create(self) -> str:
        """Create what is missing, serialised with every other process doing the same."""
        return "SELECT pg_advisory_xact_lock(hashtext('tidings.schema'));" + self.sql(_SCHEMA)
