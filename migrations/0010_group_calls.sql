-- migrations/0010_group_calls.sql - a group change asked from Matrix is remembered until
-- WhatsApp's answer is shown.
--
-- group_call: a participant change (add, remove, promote, demote) a Matrix user made in a group
-- portal, sent to WhatsApp through their login. The row goes in, and the Matrix event's inbox row
-- goes out, in one durable transaction before the call is sent (so a restart never sends it
-- twice); it leaves when the answer has been shown. A row whose answer never came (the bridge
-- stopped, or the connection was lost with the call on its way) is settled when the login is
-- connected again: the group is asked what it is now, and the change is shown as made, or as not
-- made (with a notice, and the room put back).
-- change: wa_group_change (0 add, 1 remove, 2 promote, 3 demote); undo_level: the power level put
-- back when a promote or demote was not made. Rare rows: a foreign key is no cost here.

CREATE TABLE group_call (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    login_id    bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    group_jid   text NOT NULL,
    room        text NOT NULL,
    change      integer NOT NULL,
    target_jid  text NOT NULL,
    undo_level  integer NOT NULL,
    created_ms  bigint NOT NULL
);
CREATE INDEX group_call_login ON group_call (login_id);
