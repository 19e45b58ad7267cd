-- migrations/0008_hot_rows_unlocked.sql - the rows written once per bridged message no longer
-- carry foreign keys; the parent's deletion still takes them (triggers below).
--
-- A foreign key check locks the parent row (SELECT ... FOR KEY SHARE): every message, buffered
-- event and sent plaintext locked its login's wa_login row and its portal row, which writes a WAL
-- record and dirties the parent's page each time, and turns the lock into a MultiXact when two
-- transactions overlap (they do: several connections write for one login). Measured over a 4,000
-- message drain each way (bench/bench_drain.mjs): ~2.6 lock records per message, and PostgreSQL's
-- CPU per message went from 180-260 us to 130-150 (WhatsApp -> Matrix) and from 365-430 to
-- 290-300 (Matrix -> WhatsApp) without them.
--
-- What the keys gave that is kept: deleting a portal deletes its messages; deleting a login
-- deletes its buffered events and sent plaintexts and forgets it as the bridging login of its
-- messages (the former ON DELETE CASCADE / SET NULL), done by statement triggers on the parents.
-- What is given up: a row written for a parent deleted at the same moment is not refused. Such a
-- row is never read (ids are never reused: identity columns), and db_sweep_orphans, run at
-- startup, deletes the engine's orphans (event buffer, sent plaintexts).

ALTER TABLE message DROP CONSTRAINT message_portal_id_fkey;
ALTER TABLE message DROP CONSTRAINT message_login_id_fkey;
ALTER TABLE wa_event_buffer DROP CONSTRAINT wa_event_buffer_login_id_fkey;
ALTER TABLE wa_sent_message DROP CONSTRAINT wa_sent_message_login_id_fkey;

CREATE FUNCTION wabridge_portal_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message WHERE portal_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER portal_deleted AFTER DELETE ON portal REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION wabridge_portal_deleted();

CREATE FUNCTION wabridge_login_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM wa_event_buffer WHERE login_id IN (SELECT id FROM gone);
    DELETE FROM wa_sent_message WHERE login_id IN (SELECT id FROM gone);
    UPDATE message SET login_id = NULL WHERE login_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;
CREATE TRIGGER login_deleted AFTER DELETE ON wa_login REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION wabridge_login_deleted();
