-- depends: 0006.movement-content-inline
-- A restore merges a release into the tables that exist (movelib.ship.merge) instead of dropping
-- and re-creating them, so that what an application built on them (foreign keys, views, grants,
-- policies) stays, and its ids with it. Where the release does not hold a version the target
-- published (or holds it with other content), that version is removed: the one case in which a
-- published movement, its draft and its audit rows are deleted. The guards of 0001 allow it only
-- to a transaction that declared it (movelib.restore_removes, set to its own transaction id) and
-- that records a restore in movement_provenance before it commits (checked at COMMIT by the
-- constraint triggers below): a removal never happens without its record.

-- The transaction that records a restore: every provenance row knows the transaction that wrote
-- it (NULL for the rows written before this migration).
ALTER TABLE movement_provenance ADD COLUMN IF NOT EXISTS xact xid8;
ALTER TABLE movement_provenance ALTER COLUMN xact SET DEFAULT pg_current_xact_id();
-- What a merging restore changed: versions added, removed, kept, pointers moved.
ALTER TABLE movement_provenance ADD COLUMN IF NOT EXISTS changes jsonb;

CREATE OR REPLACE FUNCTION movement_restore_removes() RETURNS boolean
LANGUAGE sql STABLE PARALLEL RESTRICTED
RETURN coalesce(current_setting('movelib.restore_removes', true), '') = pg_current_xact_id()::text;

CREATE OR REPLACE FUNCTION movement_library_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' AND movement_restore_removes() THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'Published movements cannot be edited'
        USING DETAIL = CASE WHEN TG_LEVEL = 'ROW'
                            THEN format('movement %s version %s', OLD.slug, OLD.version)
                            ELSE 'TRUNCATE of movement_library' END,
              HINT = 'Publish a new version of the movement instead.';
END
$$;

CREATE OR REPLACE FUNCTION movement_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' AND movement_restore_removes() THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'The movement audit log is append-only';
END
$$;

CREATE OR REPLACE FUNCTION movement_staging_no_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.status IN ('approved', 'published') AND NOT movement_restore_removes() THEN
        RAISE EXCEPTION 'movement % version % is %: it cannot be deleted',
            OLD.slug, OLD.version, OLD.status;
    END IF;
    RETURN OLD;
END
$$;

-- At COMMIT: a transaction that removed published content recorded a restore.
CREATE OR REPLACE FUNCTION movement_removal_recorded() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM movement_provenance
                    WHERE kind = 'restore' AND xact = pg_current_xact_id()) THEN
        RAISE EXCEPTION 'movement % version % was removed from % by a transaction that recorded no restore',
            OLD.slug, OLD.version, TG_TABLE_NAME
            USING HINT = 'only inv restore removes published movements, and it records itself in movement_provenance';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER movement_library_removal_recorded
    AFTER DELETE ON movement_library DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION movement_removal_recorded();
CREATE CONSTRAINT TRIGGER movement_audit_log_removal_recorded
    AFTER DELETE ON movement_audit_log DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION movement_removal_recorded();
