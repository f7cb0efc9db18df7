"""SQL of the PostgreSQL event store: its tables, functions and statements."""

from __future__ import annotations

__all__ = [
    "APPEND",
    "APPEND_MANY",
    "DELETE_STREAM",
    "READABLE_HEAD",
    "READ_ALL",
    "READ_BACKWARD",
    "READ_FORWARD",
    "SAVE_SNAPSHOT",
    "SET_CHECKPOINT",
    "SET_METADATA",
    "schema_ddl",
]

_TABLES = """
CREATE TABLE IF NOT EXISTS tidings_streams (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    version bigint NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    metadata jsonb
);
CREATE TABLE IF NOT EXISTS tidings_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    position bigint NOT NULL
);
INSERT INTO tidings_head (position) VALUES (0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS tidings_commits (
    position bigint PRIMARY KEY,   -- of the commit's last event
    stream_id bigint NOT NULL,
    version bigint NOT NULL,       -- of the commit's last event
    count integer NOT NULL,
    recorded_at timestamptz NOT NULL,
    events bytea,                  -- NULL once erased
    UNIQUE (stream_id, version)
);
CREATE TABLE IF NOT EXISTS tidings_snapshots (
    stream text PRIMARY KEY,
    version bigint NOT NULL,
    type text NOT NULL,
    data bytea NOT NULL,
    schema_version integer NOT NULL
);
CREATE TABLE IF NOT EXISTS tidings_checkpoints (
    name text PRIMARY KEY,
    position bigint NOT NULL
);
"""

# p_expected: a version >= 0, -1 for "no stream", -2 for "any".
# o_status: 0 appended (o_version: the new version, o_head: the last position), 1 version
# conflict (o_version: the actual version, NULL for no stream), 2 deleted stream.
# Locks: the stream's row first (so concurrent appends to one stream see each other's version),
# then the head row, held until commit: appends commit one at a time, in position order, and a
# reader can never see a position before every lower one (no gaps).
_APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION tidings_append(
    p_stream text, p_expected bigint, p_counts integer[], p_events bytea[],
    OUT o_status integer, OUT o_version bigint, OUT o_head bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_total integer := coalesce((SELECT sum(c) FROM unnest(p_counts) AS c), 0);
    v_id bigint;
    v_deleted boolean;
    v_position bigint;
    v_at timestamptz;
BEGIN
    o_status := 0;
    IF v_total > 0 THEN
        FOR attempt IN 1 .. 2 LOOP
            IF p_expected <> -1 THEN
                UPDATE tidings_streams AS s SET version = s.version + v_total
                    WHERE s.name = p_stream AND NOT s.deleted
                        AND (p_expected = -2 OR s.version = p_expected)
                    RETURNING s.id, s.version - v_total INTO v_id, o_version;
                EXIT WHEN v_id IS NOT NULL OR p_expected > 0;
            END IF;
            INSERT INTO tidings_streams (name, version) VALUES (p_stream, v_total)
                ON CONFLICT (name) DO NOTHING RETURNING id INTO v_id;
            o_version := 0;
            -- Only "any" tries again: the stream was created meanwhile, or it is deleted.
            EXIT WHEN v_id IS NOT NULL OR p_expected <> -2;
        END LOOP;
    END IF;
    IF v_id IS NULL THEN  -- nothing appended: report the stream as it is
        SELECT s.version, s.deleted INTO o_version, v_deleted
            FROM tidings_streams AS s WHERE s.name = p_stream;
        IF v_deleted THEN
            o_status := 2;
        ELSIF v_total > 0 OR NOT (p_expected = -2 OR coalesce(o_version, 0) = p_expected
                OR (p_expected = -1 AND o_version IS NULL)) THEN
            o_status := 1;
        ELSE
            o_version := coalesce(o_version, 0);
        END IF;
        RETURN;
    END IF;
    UPDATE tidings_head SET position = position + v_total RETURNING position INTO o_head;
    v_position := o_head - v_total;
    v_at := clock_timestamp();
    FOR i IN 1 .. array_length(p_counts, 1) LOOP
        o_version := o_version + p_counts[i];
        v_position := v_position + p_counts[i];
        INSERT INTO tidings_commits
            VALUES (v_position, v_id, o_version, p_counts[i], v_at, p_events[i]);
    END LOOP;
    PERFORM pg_notify(%(channel)s, o_head::text);
END
$fn$;
"""

# Appends of one batch, each checked and applied on its own by tidings_append, in order; one
# round trip and one commit for all (see batch.py).
_APPEND_MANY_FUNCTION = """
CREATE OR REPLACE FUNCTION tidings_append_many(
    p_streams text[], p_expected bigint[], p_counts integer[], p_events bytea[])
RETURNS TABLE (o_status integer, o_version bigint, o_head bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
    FOR i IN 1 .. array_length(p_streams, 1) LOOP
        SELECT a.o_status, a.o_version, a.o_head INTO o_status, o_version, o_head
            FROM tidings_append(p_streams[i], p_expected[i], ARRAY[p_counts[i]],
                ARRAY[p_events[i]]) AS a;
        RETURN NEXT;
    END LOOP;
END
$fn$;
"""

# Returns false for a stream never written. Locks like an append (stream row, then head row), so
# the readable head it announces ("reset:<position>") cannot race with an append's notification.
_DELETE_FUNCTION = """
CREATE OR REPLACE FUNCTION tidings_delete_stream(p_stream text) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_id bigint;
    v_deleted boolean;
    v_head bigint;
BEGIN
    SELECT s.id, s.deleted INTO v_id, v_deleted FROM tidings_streams AS s WHERE s.name = p_stream
        FOR UPDATE;
    PERFORM 1 FROM tidings_head FOR UPDATE;
    IF v_id IS NULL THEN
        RETURN false;
    END IF;
    IF v_deleted THEN
        RETURN true;
    END IF;
    UPDATE tidings_streams SET deleted = true, metadata = NULL WHERE id = v_id;
    UPDATE tidings_commits SET events = NULL WHERE stream_id = v_id;
    DELETE FROM tidings_snapshots WHERE stream = p_stream;
    SELECT c.position INTO v_head FROM tidings_commits AS c
        WHERE c.events IS NOT NULL ORDER BY c.position DESC LIMIT 1;
    PERFORM pg_notify(%(channel)s, 'reset:' || coalesce(v_head, 0));
    RETURN true;
END
$fn$;
"""


def schema_ddl(schema: str, channel: str) -> str:
    """Create the schema, tables and functions if missing (idempotent, safe to run concurrently:
    an advisory lock per schema serialises it). ``schema`` must be a plain identifier."""
    literal = "'" + channel.replace("'", "''") + "'"
    return (
        f"SELECT pg_advisory_xact_lock(hashtext('tidings_schema_{schema}'));"
        f'CREATE SCHEMA IF NOT EXISTS "{schema}";'
        f'SET LOCAL search_path = "{schema}";'
        + _TABLES
        + _APPEND_FUNCTION % {"channel": literal}
        + _APPEND_MANY_FUNCTION
        + _DELETE_FUNCTION % {"channel": literal}
    )


APPEND = "SELECT * FROM tidings_append($1, $2, $3, $4)"
APPEND_MANY = "SELECT * FROM tidings_append_many($1, $2, $3, $4)"
DELETE_STREAM = "SELECT tidings_delete_stream($1)"
READ_FORWARD = (
    "SELECT c.version, c.position, c.count, c.recorded_at, c.events FROM tidings_commits AS c"
    " WHERE c.stream_id = (SELECT id FROM tidings_streams WHERE name = $1) AND c.version >= $2"
    " AND c.events IS NOT NULL ORDER BY c.version LIMIT $3"
)
READ_BACKWARD = (
    "SELECT c.version, c.position, c.count, c.recorded_at, c.events FROM tidings_commits AS c"
    " WHERE c.stream_id = (SELECT id FROM tidings_streams WHERE name = $1)"
    " AND c.version - c.count < $2 AND c.events IS NOT NULL ORDER BY c.version DESC LIMIT $3"
)
READ_ALL = (
    "SELECT s.name, c.version, c.position, c.count, c.recorded_at, c.events"
    " FROM tidings_commits AS c JOIN tidings_streams AS s ON s.id = c.stream_id"
    " WHERE c.position > $1 AND c.events IS NOT NULL ORDER BY c.position LIMIT $2"
)
READABLE_HEAD = (
    "SELECT position FROM tidings_commits WHERE events IS NOT NULL ORDER BY position DESC LIMIT 1"
)
SET_METADATA = (
    "UPDATE tidings_streams SET metadata = CASE WHEN deleted THEN NULL ELSE $2::jsonb END"
    " WHERE name = $1 RETURNING deleted"
)
SAVE_SNAPSHOT = (
    "INSERT INTO tidings_snapshots AS s (stream, version, type, data, schema_version)"
    " SELECT $1::text, $2::bigint, $3::text, $4::bytea, $5::integer"
    " WHERE NOT EXISTS (SELECT 1 FROM tidings_streams WHERE name = $1 AND deleted)"
    " ON CONFLICT (stream) DO UPDATE SET version = excluded.version, type = excluded.type,"
    " data = excluded.data, schema_version = excluded.schema_version"
    " WHERE excluded.version >= s.version"
)
SET_CHECKPOINT = (
    "INSERT INTO tidings_checkpoints (name, position) VALUES ($1, $2)"
    " ON CONFLICT (name) DO UPDATE SET position = excluded.position"
)
