-- The tamper-evident chain (kefu_app::integrity): one hash per event, chained to the previous
-- event of its stream, written in the append's transaction.
CREATE TABLE event_store.event_hashes (
    global_position bigint PRIMARY KEY REFERENCES event_store.events (global_position),
    stream_id       uuid   NOT NULL,
    stream_version  bigint NOT NULL,
    previous        bytea  NOT NULL CHECK (length(previous) = 32),
    hash            bytea  NOT NULL CHECK (length(hash) = 32),
    UNIQUE (stream_id, stream_version)
);

-- Anchors: digests over the whole log up to a position, each chained to the one before.
CREATE TABLE event_store.anchors (
    position          bigint      PRIMARY KEY CHECK (position >= 1),
    previous_position bigint      NOT NULL CHECK (previous_position >= 0 AND previous_position < position),
    hash              bytea       NOT NULL CHECK (length(hash) = 32),
    anchored_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION event_store.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'event_store.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER event_hashes_append_only BEFORE UPDATE OR DELETE ON event_store.event_hashes
    FOR EACH ROW EXECUTE FUNCTION event_store.refuse_change();
CREATE TRIGGER event_hashes_no_truncate BEFORE TRUNCATE ON event_store.event_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION event_store.refuse_change();
CREATE TRIGGER anchors_append_only BEFORE UPDATE OR DELETE ON event_store.anchors
    FOR EACH ROW EXECUTE FUNCTION event_store.refuse_change();
CREATE TRIGGER anchors_no_truncate BEFORE TRUNCATE ON event_store.anchors
    FOR EACH STATEMENT EXECUTE FUNCTION event_store.refuse_change();

-- Tracing what an event caused follows command ids too.
CREATE INDEX events_by_command ON event_store.events (command_id);
