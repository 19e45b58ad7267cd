-- migrations/0009_unused_indexes.sql - what no statement uses but every bridged message paid for
-- goes: message's identity id and its primary key index (nothing reads it: a message is found by
-- its unique portal + WhatsApp id + part, all NOT NULL, or by its unique Matrix event id),
-- message's (portal_id, timestamp_ms) index and mx_inbox's (room_id, id) index (no statement
-- filters or orders by them). A feature that needs one adds it back with its statement.

DROP INDEX message_portal_ts;
ALTER TABLE message DROP COLUMN id;
DROP INDEX mx_inbox_room;
