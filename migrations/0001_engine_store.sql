-- migrations/0001_engine_store.sql - Matrix users, WhatsApp logins and the WhatsApp engine's store.
--
-- The engine's store (wa/store.h, implemented in db/store_pg.c) keeps everything a WhatsApp Web
-- companion device must remember: its own keys and pairing (wa_device), its peers' identity keys,
-- one-time prekeys, Signal sessions and sender keys, app-state sync keys, versions and mutation MACs,
-- contacts, chat settings, the LID <-> phone number map, message secrets, the decrypted-event buffer
-- and the recently sent plaintexts answered on retry receipts. Every row belongs to one login
-- (login_id), and disappears with it (ON DELETE CASCADE). Binary values are bytea; times are
-- milliseconds since the Unix epoch in bigint columns named *_ms.
-- Applied in one transaction by db_migrate (db/migrate.c); never edit a released migration.

-- A Matrix user of the bridge.
CREATE TABLE mx_user (
    mxid            text PRIMARY KEY,                   -- @alice:example.org
    management_room text,                               -- room id of the user's command room
    space_room      text,                               -- room id of the user's WhatsApp space
    created_ms      bigint NOT NULL
);

-- A WhatsApp account logged in through the bridge: one companion device of one phone.
-- owner/lease_expires_ms: the process serving the login (DESIGN.md "Scaling out"); a lease is taken
-- with SELECT ... FOR UPDATE SKIP LOCKED and renewed by heartbeat.
CREATE TABLE wa_login (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mxid             text NOT NULL REFERENCES mx_user (mxid) ON DELETE CASCADE,
    phone            text,                              -- phone number user, digits only
    state            text NOT NULL DEFAULT 'new',       -- new, pairing, connected, logged_out, ...
    owner            text,                              -- process id holding the lease, NULL: none
    lease_expires_ms bigint,                            -- the lease is void after this instant
    created_ms       bigint NOT NULL
);
CREATE INDEX wa_login_mxid ON wa_login (mxid);
CREATE INDEX wa_login_lease ON wa_login (lease_expires_ms);

-- This device's identity: one row per login, written at pairing.
CREATE TABLE wa_device (
    login_id            bigint PRIMARY KEY REFERENCES wa_login (id) ON DELETE CASCADE,
    noise_priv          bytea NOT NULL CHECK (length(noise_priv) = 32),
    noise_pub           bytea NOT NULL CHECK (length(noise_pub) = 32),
    identity_priv       bytea NOT NULL CHECK (length(identity_priv) = 32),
    identity_pub        bytea NOT NULL CHECK (length(identity_pub) = 32),
    registration_id     bigint NOT NULL,                -- 14-bit Signal registration id
    signed_prekey_id    bigint NOT NULL,
    signed_prekey_priv  bytea NOT NULL CHECK (length(signed_prekey_priv) = 32),
    signed_prekey_pub   bytea NOT NULL CHECK (length(signed_prekey_pub) = 32),
    signed_prekey_sig   bytea NOT NULL CHECK (length(signed_prekey_sig) = 64),
    adv_secret          bytea NOT NULL CHECK (length(adv_secret) = 32),
    adv_details         bytea NOT NULL,                 -- ADVSignedDeviceIdentity.details (protobuf)
    adv_account_sig_key bytea NOT NULL,                 -- 32 bytes once paired, empty before
    adv_account_sig     bytea NOT NULL,                 -- 64 bytes once paired, empty before
    adv_device_sig      bytea NOT NULL,                 -- 64 bytes once paired, empty before
    platform            text NOT NULL DEFAULT '',       -- e.g. "android", from the pairing
    push_name           text NOT NULL DEFAULT '',
    business_name       text NOT NULL DEFAULT '',
    pn                  text NOT NULL DEFAULT '',       -- our device JID on s.whatsapp.net
    lid                 text NOT NULL DEFAULT '',       -- our device JID on lid
    next_prekey_id      bigint NOT NULL DEFAULT 1
);

-- Identity keys of peers, by Signal address.
CREATE TABLE wa_identity (
    login_id     bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    address      text NOT NULL,                        -- Signal address, e.g. "1555...:3"
    identity_key bytea NOT NULL CHECK (length(identity_key) = 32),
    PRIMARY KEY (login_id, address)
);

-- One-time prekeys; uploaded: the server has it (and may hand it to a peer).
CREATE TABLE wa_prekey (
    login_id bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    key_id   bigint NOT NULL,                           -- 24-bit prekey id
    priv     bytea NOT NULL CHECK (length(priv) = 32),
    pub      bytea NOT NULL CHECK (length(pub) = 32),
    uploaded boolean NOT NULL DEFAULT false,
    PRIMARY KEY (login_id, key_id)
);

-- Signal sessions (serialized session records), by peer address.
CREATE TABLE wa_session (
    login_id bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    address  text NOT NULL,
    record   bytea NOT NULL,
    PRIMARY KEY (login_id, address)
);

-- Group sender keys (serialized sender key records), by group and sender address.
CREATE TABLE wa_sender_key (
    login_id bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    group_id text NOT NULL,                              -- group JID
    sender   text NOT NULL,                              -- sender's Signal address
    record   bytea NOT NULL,
    PRIMARY KEY (login_id, group_id, sender)
);

-- App-state sync keys, shared by the phone.
CREATE TABLE wa_appstate_key (
    login_id     bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    key_id       bytea NOT NULL,
    key_data     bytea NOT NULL,
    fingerprint  bytea NOT NULL,                         -- AppStateSyncKeyFingerprint (protobuf)
    timestamp_ms bigint NOT NULL,
    PRIMARY KEY (login_id, key_id)
);

-- App-state collection versions and their LTHash.
CREATE TABLE wa_appstate_version (
    login_id bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    name     text NOT NULL,                              -- regular, regular_low, critical_block, ...
    version  bigint NOT NULL,
    hash     bytea NOT NULL CHECK (length(hash) = 128),
    PRIMARY KEY (login_id, name)
);

-- App-state mutation MACs: the value MAC of the current mutation at each index.
CREATE TABLE wa_appstate_mac (
    login_id  bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    name      text NOT NULL,
    index_mac bytea NOT NULL CHECK (length(index_mac) = 32),
    value_mac bytea NOT NULL CHECK (length(value_mac) = 32),
    version   bigint NOT NULL,                           -- collection version that set it
    PRIMARY KEY (login_id, name, index_mac)
);

-- Contacts: names from the address book (app state) and push names (messages).
CREATE TABLE wa_contact (
    login_id      bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    jid           text NOT NULL,
    first_name    text NOT NULL DEFAULT '',
    full_name     text NOT NULL DEFAULT '',
    push_name     text NOT NULL DEFAULT '',
    business_name text NOT NULL DEFAULT '',
    PRIMARY KEY (login_id, jid)
);

-- Per-chat settings from app state.
CREATE TABLE wa_chat_settings (
    login_id       bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    chat_jid       text NOT NULL,
    muted_until_ms bigint NOT NULL DEFAULT 0,            -- 0: not muted, -1: forever
    pinned         boolean NOT NULL DEFAULT false,
    archived       boolean NOT NULL DEFAULT false,
    marked_unread  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (login_id, chat_jid)
);

-- LID <-> phone number user, both ways unique.
CREATE TABLE wa_lid_map (
    login_id bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    lid      text NOT NULL,                               -- LID user (no device)
    pn       text NOT NULL,                               -- phone number user (no device)
    PRIMARY KEY (login_id, lid),
    UNIQUE (login_id, pn)
);

-- Message secrets (messageContextInfo.messageSecret) for polls, reactions, edits of encrypted
-- add-ons.
CREATE TABLE wa_message_secret (
    login_id   bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    chat_jid   text NOT NULL,
    sender_jid text NOT NULL,
    message_id text NOT NULL,
    secret     bytea NOT NULL CHECK (length(secret) = 32),
    PRIMARY KEY (login_id, chat_jid, sender_jid, message_id)
);

-- Decrypted events not yet bridged (DESIGN.md "Nothing is lost"): written in the same transaction
-- as the advanced Signal session, before the ack; a redelivered stanza is answered from here. The
-- row goes once the Matrix event id is stored.
CREATE TABLE wa_event_buffer (
    login_id        bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    ciphertext_hash bytea NOT NULL CHECK (length(ciphertext_hash) = 32), -- SHA-256 of the ciphertext
    chat_jid        text NOT NULL,
    sender_jid      text NOT NULL,
    message_id      text NOT NULL,
    plaintext       bytea NOT NULL,
    server_ts_ms    bigint NOT NULL,                      -- the stanza's t, in ms
    inserted_ms     bigint NOT NULL,
    PRIMARY KEY (login_id, ciphertext_hash)
);
CREATE INDEX wa_event_buffer_inserted ON wa_event_buffer (login_id, inserted_ms);

-- Recently sent plaintexts, to re-encrypt on a retry receipt.
CREATE TABLE wa_sent_message (
    login_id   bigint NOT NULL REFERENCES wa_login (id) ON DELETE CASCADE,
    chat_jid   text NOT NULL,
    message_id text NOT NULL,
    plaintext  bytea NOT NULL,
    sent_ms    bigint NOT NULL,
    PRIMARY KEY (login_id, chat_jid, message_id)
);
CREATE INDEX wa_sent_message_sent ON wa_sent_message (login_id, sent_ms);
