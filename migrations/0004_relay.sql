-- migrations/0004_relay.sql - relay mode (bridge.relay.enabled): a portal's relay login
-- (portal.relay_login_id, since 0002) sends the messages of Matrix users who have no WhatsApp
-- login of their own. Such a message's row records who wrote it, so that only they can edit or
-- delete it later ('' for every other message).

ALTER TABLE message ADD COLUMN relay_sender text NOT NULL DEFAULT '';
