-- Each committed batch of appends leaves a token of its own on the log head. A writer that
-- planned a batch on top of another batch it has not seen commit yet asks for the head to
-- carry that batch's token: the position alone could coincide with someone else's appends,
-- the token cannot (kefu_store::writer, ADR 0014).
ALTER TABLE event_store.log_head ADD COLUMN batch uuid;
