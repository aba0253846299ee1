-- Snapshots of folded views, so reading a long history as of a point (`asOf`) starts from the
-- nearest earlier snapshot instead of the first event. A cache: any row may be deleted at any
-- time, and rows of another fold version are ignored.
CREATE TABLE projections.snapshots (
    kind             text        NOT NULL,
    subject_id       uuid        NOT NULL,
    fold_version     integer     NOT NULL,
    -- Every event of the subject up to this global position, and none after, is folded in.
    through_position bigint      NOT NULL,
    events           bigint      NOT NULL,
    -- The latest times among those events: the snapshot serves a recordedAt / occurredAt
    -- cutoff only when every event in it is within the cutoff.
    max_recorded_at  timestamptz NOT NULL,
    max_occurred_at  timestamptz NOT NULL,
    view             jsonb       NOT NULL,
    taken_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (kind, subject_id, fold_version, through_position)
);
