-- migrations/0007_event_buffer_index.sql - the event buffer's rows looked up by message: a bridged
-- message's buffer row is deleted by (login, chat, message id) together with its mapping row
-- (db_message_insert_done, db_event_buffer_done). Without this index each deletion read every
-- buffered row of the login: a backlog of n messages cost O(n^2) (~0.4 ms per message at 2,000).

CREATE INDEX wa_event_buffer_message ON wa_event_buffer (login_id, chat_jid, message_id);
