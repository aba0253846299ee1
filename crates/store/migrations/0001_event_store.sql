-- The write side: streams, the global log, the command journal.
-- Owned by kefu-store; applied by `kefu migrate` (and on start of every kefu process).

CREATE TABLE event_store.streams (
    stream_id   uuid        PRIMARY KEY,
    stream_type text        NOT NULL,
    customer_id uuid,
    version     bigint      NOT NULL CHECK (version >= 0),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row holding the last assigned global position. Appenders take its row lock just before
-- inserting and keep it until commit, so positions are dense and become visible in order:
-- a reader never sees position p+1 while p is still in flight.
CREATE TABLE event_store.log_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL CHECK (position >= 0)
);
INSERT INTO event_store.log_head (singleton, position) VALUES (true, 0);

CREATE TABLE event_store.events (
    global_position bigint      PRIMARY KEY CHECK (global_position >= 1),
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       uuid        NOT NULL REFERENCES event_store.streams (stream_id),
    stream_type     text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version >= 1),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    customer_id     uuid,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor           jsonb       NOT NULL,
    correlation_id  uuid        NOT NULL,
    causation_id    uuid        NOT NULL,
    command_id      uuid        NOT NULL,
    payload         jsonb       NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_by_customer ON event_store.events (customer_id, global_position);
CREATE INDEX events_by_correlation ON event_store.events (correlation_id);
CREATE INDEX events_by_causation ON event_store.events (causation_id);

-- History is append-only: no UPDATE, DELETE or TRUNCATE, whoever asks.
CREATE FUNCTION event_store.refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'event_store.events is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON event_store.events
    FOR EACH ROW EXECUTE FUNCTION event_store.refuse_rewrite();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON event_store.events
    FOR EACH STATEMENT EXECUTE FUNCTION event_store.refuse_rewrite();

-- Every command, with its result: a retry with the same id gets the first result.
CREATE TABLE event_store.commands (
    command_id   uuid        PRIMARY KEY,
    command_type text        NOT NULL,
    stream_id    uuid        NOT NULL,
    payload      jsonb       NOT NULL,
    actor        jsonb       NOT NULL,
    outcome      jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX commands_by_stream ON event_store.commands (stream_id);

-- The relay's progress: everything up to `position` was acknowledged by the broker.
CREATE TABLE event_store.relay_cursor (
    topic      text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Per partition: the offset after the last record the relay wrote and the global position
-- it carried. Lets readers tell whether a projection has caught up with a position.
CREATE TABLE event_store.relay_partitions (
    topic         text    NOT NULL,
    partition     integer NOT NULL,
    next_offset   bigint  NOT NULL,
    last_position bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
