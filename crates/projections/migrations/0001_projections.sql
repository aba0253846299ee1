-- Bookkeeping shared by all projections. Each projection generation keeps its read-model
-- tables in a schema of its own (e.g. p_customer360_g2); this schema says which generation
-- serves queries and how far each has got.

CREATE TABLE projections.generations (
    name               text        NOT NULL,
    generation         integer     NOT NULL CHECK (generation >= 1),
    schema_name        text        NOT NULL UNIQUE,
    status             text        NOT NULL CHECK (status IN ('building', 'active', 'retired')),
    layout_fingerprint text        NOT NULL,
    topic              text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    activated_at       timestamptz,
    retired_at         timestamptz,
    PRIMARY KEY (name, generation)
);
-- At most one generation of a projection serves queries.
CREATE UNIQUE INDEX generations_one_active ON projections.generations (name) WHERE status = 'active';

-- Consumed offsets, written in the same transaction as the read-model rows they produced.
CREATE TABLE projections.checkpoints (
    name             text        NOT NULL,
    generation       integer     NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL,
    next_offset      bigint      NOT NULL,
    last_position    bigint      NOT NULL,
    last_recorded_at timestamptz,
    records_consumed   bigint      NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, generation, topic, partition),
    FOREIGN KEY (name, generation) REFERENCES projections.generations (name, generation) ON DELETE CASCADE
);

-- Streams a generation stopped applying because one of their events failed. Only the
-- stream is parked; everything else flows on.
CREATE TABLE projections.dead_letters (
    name           text        NOT NULL,
    generation     integer     NOT NULL,
    stream_id      uuid        NOT NULL,
    stream_type    text        NOT NULL,
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    global_position bigint     NOT NULL,
    partition      integer     NOT NULL,
    "offset"       bigint      NOT NULL,
    reason         text        NOT NULL,
    skipped_events integer     NOT NULL DEFAULT 0,
    parked_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, generation, stream_id),
    FOREIGN KEY (name, generation) REFERENCES projections.generations (name, generation) ON DELETE CASCADE
);

-- Records that could not even be decoded (no stream to park): kept for inspection.
CREATE TABLE projections.undecodable (
    name       text        NOT NULL,
    generation integer     NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,
    reason     text        NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, generation, partition, "offset")
);
