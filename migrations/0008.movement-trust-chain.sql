-- depends: 0007.movement-restore-merge
-- The trust log becomes a hash chain (issue: an owner who disables a trigger): each entry names
-- the previous entry's hash and its own, over every column it records. movelib replays the log
-- on every read of the trust (movelib.ship.trust_log) and refuses a trust whose pinned signers or
-- threshold differ from what the log says, or whose chain is broken: a signer inserted behind
-- the triggers has no entry, a deleted or edited entry breaks the chain. What the chain cannot
-- stop (an owner who rewrites signers and log consistently) is said in SECURITY.md.
--
-- The entry's text is built here and, identically, by movelib's check (trust_log.ENTRY): a JSON
-- array of the previous hash and the recorded columns, the time in UTC to the microsecond, so
-- that neither the session's TimeZone nor DateStyle changes it.

-- A restore records the sha256 of the manifest bytes its signatures were verified over, so that
-- `inv verify --release` and `inv promote` claim a signed release only for those very bytes.
ALTER TABLE movement_provenance ADD COLUMN IF NOT EXISTS manifest_sha256 text
    CHECK (manifest_sha256 ~ '^[0-9a-f]{64}$');

ALTER TABLE movement_trust_log ADD COLUMN IF NOT EXISTS prev_hash text;
ALTER TABLE movement_trust_log ADD COLUMN IF NOT EXISTS entry_hash text;

CREATE OR REPLACE FUNCTION movement_trust_entry_hash(e movement_trust_log) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.jsonb_build_array(
    e.prev_hash, e.change, e.principal, e.fingerprint, e.public_key, e.threshold, e.changed_by,
    e.db_user, pg_catalog.to_char(e.changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
)::text, 'UTF8')), 'hex');

-- Each new entry links to the latest one; trust changes are serialized (a transaction-scoped
-- advisory lock: no privilege needed), so two writers never link to the same entry. The role
-- and the time are the database's, whatever an INSERT says.
CREATE OR REPLACE FUNCTION movement_trust_log_chain() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('movement_trust_log'));
    NEW.db_user := session_user;
    NEW.changed_at := pg_catalog.clock_timestamp();
    NEW.prev_hash := coalesce((SELECT entry_hash FROM movement_trust_log
                               ORDER BY id DESC LIMIT 1), '');
    NEW.entry_hash := movement_trust_entry_hash(NEW);
    RETURN NEW;
END;
$$;

-- The entries written before this migration are chained once, in their order (trusted as they
-- stand now: the chain protects what follows).
DO $$
DECLARE
    prev text := '';
    entry movement_trust_log;
BEGIN
    IF EXISTS (SELECT FROM movement_trust_log WHERE entry_hash IS NULL) THEN
        ALTER TABLE movement_trust_log DISABLE TRIGGER movement_trust_log_no_update_delete;
        FOR entry IN SELECT * FROM movement_trust_log ORDER BY id LOOP
            entry.prev_hash := prev;
            prev := movement_trust_entry_hash(entry);
            UPDATE movement_trust_log SET prev_hash = entry.prev_hash, entry_hash = prev
                WHERE id = entry.id;
        END LOOP;
        ALTER TABLE movement_trust_log ENABLE TRIGGER movement_trust_log_no_update_delete;
    END IF;
END;
$$;

ALTER TABLE movement_trust_log ALTER COLUMN prev_hash SET NOT NULL;
ALTER TABLE movement_trust_log ALTER COLUMN entry_hash SET NOT NULL;

CREATE OR REPLACE TRIGGER movement_trust_log_chained
    BEFORE INSERT ON movement_trust_log
    FOR EACH ROW EXECUTE FUNCTION movement_trust_log_chain();
