-- migrations/0002_bridge.sql - the bridge's own tables: portals, ghosts, messages and what hangs off
-- them.
--
-- A portal is a Matrix room for a WhatsApp chat. Group portals are shared by every login in the
-- group (receiver_login_id NULL); direct chats get one portal per login (receiver_login_id set).
-- A ghost is the Matrix puppet of a WhatsApp user. message maps WhatsApp message ids to Matrix event
-- ids, one row per part (a WhatsApp message with a caption may become several Matrix events), and
-- is used for replies, edits, reactions, redactions, receipts and duplicate detection. Tables a login
-- owns carry login_id. Times are milliseconds since the Unix epoch (*_ms).

CREATE TABLE portal (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_jid          text NOT NULL,                      -- WhatsApp chat (user or group JID)
    receiver_login_id bigint REFERENCES wa_login (id) ON DELETE CASCADE, -- NULL: shared portal
    mxid              text UNIQUE,                        -- Matrix room id, NULL until created
    name              text NOT NULL DEFAULT '',
    topic             text NOT NULL DEFAULT '',
    avatar_id         text NOT NULL DEFAULT '',           -- WhatsApp picture id
    avatar_mxc        text NOT NULL DEFAULT '',
    name_set          boolean NOT NULL DEFAULT false,
    topic_set         boolean NOT NULL DEFAULT false,
    avatar_set        boolean NOT NULL DEFAULT false,
    encrypted         boolean NOT NULL DEFAULT false,
    disappear_timer_s bigint NOT NULL DEFAULT 0,          -- chat's disappearing timer, 0: off
    relay_login_id    bigint REFERENCES wa_login (id) ON DELETE SET NULL,
    created_ms        bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (chat_jid, receiver_login_id)
);

CREATE TABLE ghost (
    jid          text PRIMARY KEY,                        -- WhatsApp user (PN or LID, no device)
    mxid         text NOT NULL UNIQUE,                    -- @whatsapp_1555...:example.org
    name         text NOT NULL DEFAULT '',
    avatar_id    text NOT NULL DEFAULT '',
    avatar_mxc   text NOT NULL DEFAULT '',
    name_set     boolean NOT NULL DEFAULT false,
    avatar_set   boolean NOT NULL DEFAULT false,
    is_bot       boolean NOT NULL DEFAULT false,
    updated_ms   bigint NOT NULL
);

CREATE TABLE message (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    portal_id        bigint NOT NULL REFERENCES portal (id) ON DELETE CASCADE,
    login_id         bigint REFERENCES wa_login (id) ON DELETE SET NULL, -- login that bridged it
    wa_id            text NOT NULL,                       -- WhatsApp message id
    part_id          text NOT NULL DEFAULT '',            -- '' for the first/only part
    sender_jid       text NOT NULL,
    mxid             text NOT NULL,                       -- Matrix event id
    mx_room          text NOT NULL,
    timestamp_ms     bigint NOT NULL,
    edit_count       integer NOT NULL DEFAULT 0,
    thread_root_wa_id text,
    reply_to_wa_id   text,
    UNIQUE (portal_id, wa_id, part_id),
    UNIQUE (mxid)
);
CREATE INDEX message_portal_ts ON message (portal_id, timestamp_ms);

CREATE TABLE reaction (
    portal_id      bigint NOT NULL REFERENCES portal (id) ON DELETE CASCADE,
    target_wa_id   text NOT NULL,
    target_part_id text NOT NULL DEFAULT '',
    sender_jid     text NOT NULL,                         -- WhatsApp allows one reaction per sender
    emoji          text NOT NULL,
    mxid           text NOT NULL UNIQUE,
    mx_room        text NOT NULL,
    timestamp_ms   bigint NOT NULL,
    PRIMARY KEY (portal_id, target_wa_id, target_part_id, sender_jid)
);

-- Which logins are in which portals.
CREATE TABLE user_portal (
    login_id     bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    portal_id    bigint NOT NULL REFERENCES portal (id) ON DELETE CASCADE,
    in_space     boolean NOT NULL DEFAULT false,
    last_read_ms bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (login_id, portal_id)
);
CREATE INDEX user_portal_portal ON user_portal (portal_id);

-- Matrix events to redact when their disappearing timer runs out; disappear_at_ms is NULL until
-- the timer starts (when the message is read, for "after read" timers).
CREATE TABLE disappearing_message (
    mxid            text PRIMARY KEY,                      -- Matrix event id
    portal_id       bigint NOT NULL REFERENCES portal (id) ON DELETE CASCADE,
    mx_room         text NOT NULL,
    timer_ms        bigint NOT NULL,
    disappear_at_ms bigint
);
CREATE INDEX disappearing_message_at ON disappearing_message (disappear_at_ms);

-- History backfill work per login and portal.
CREATE TABLE backfill_task (
    login_id         bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    portal_id        bigint NOT NULL REFERENCES portal (id) ON DELETE CASCADE,
    priority         integer NOT NULL DEFAULT 0,
    oldest_wa_id     text,                                 -- oldest message bridged so far
    oldest_ts_ms     bigint,
    cursor           bytea,                                -- opaque continuation from history sync
    completed        boolean NOT NULL DEFAULT false,
    next_dispatch_ms bigint NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (login_id, portal_id)
);
CREATE INDEX backfill_task_next ON backfill_task (completed, next_dispatch_ms);
