-- migrations/0005_group_events.sql - group notifications are durable, and group admins are known.
--
-- wa_group_event_buffer: a group notification (w:gp2: members added, removed, promoted, demoted,
-- subject, description, ...) is written here, one row per change it carries, before it is acked
-- to the WhatsApp server; the row goes once the portal showed the change on Matrix. Rows left by
-- a crash are handled again at start-up (handling one twice does no harm). A redelivered
-- notification (the server sends it again until acked) finds its rows and adds none.
--
-- group_admin: the members of a group portal's group that WhatsApp says are admins (user JIDs),
-- as the bridge last showed them (power level 50). A power-level change from Matrix that does
-- not carry its previous content is compared with this.

CREATE TABLE wa_group_event_buffer (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login_id     bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    group_jid    text NOT NULL,
    note_key     text NOT NULL,                   -- the notification's "from id"
    change_index integer NOT NULL,                -- which of its changes
    data         text NOT NULL,                   -- the change as the bridge needs it (JSON)
    inserted_ms  bigint NOT NULL,
    UNIQUE (login_id, note_key, change_index)
);

CREATE TABLE group_admin (
    portal_id bigint NOT NULL REFERENCES portal (id) ON DELETE CASCADE,
    user_jid  text NOT NULL,
    PRIMARY KEY (portal_id, user_jid)
);
