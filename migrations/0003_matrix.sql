-- migrations/0003_matrix.sql - the Matrix side: appservice transactions, the inbox, registered
-- ghosts, the room state cache, and a small key-value table.
--
-- DESIGN.md "Nothing is lost": a transaction pushed by the homeserver is written to mx_txn (its id
-- unique) and its events to mx_inbox in one SQL transaction before the 200; a repeated txn id adds
-- nothing. Events leave the inbox only once bridged (or failed with a notice). The event's JSON is
-- kept verbatim as text. Times are milliseconds since the Unix epoch (*_ms).

CREATE TABLE mx_txn (
    txn_id      text PRIMARY KEY,
    received_ms bigint NOT NULL
);

CREATE TABLE mx_inbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- arrival order
    txn_id      text NOT NULL,
    event_id    text NOT NULL UNIQUE,
    room_id     text NOT NULL,
    event_json  text NOT NULL,
    received_ms bigint NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    owner       text,                                      -- process working on it (scaling out)
    locked_ms   bigint
);
CREATE INDEX mx_inbox_room ON mx_inbox (room_id, id);

-- Ghosts (and the bot) registered on the homeserver, so registration is done once.
CREATE TABLE mx_registered_user (
    mxid          text PRIMARY KEY,
    registered_ms bigint NOT NULL
);

-- Cached room state: the latest content of each (type, state_key) the bridge cares about
-- (m.room.member, m.room.power_levels, m.room.encryption, ...).
CREATE TABLE mx_room_state (
    room_id    text NOT NULL,
    event_type text NOT NULL,
    state_key  text NOT NULL,
    content    text NOT NULL,                              -- JSON
    updated_ms bigint NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);

-- Small bridge-wide values (e.g. the bot's sync state, feature flags).
CREATE TABLE kv_store (
    key   text PRIMARY KEY,
    value text NOT NULL
);
