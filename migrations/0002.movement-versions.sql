-- depends: 0001.movement-library
-- Movement versions. A changed movement is published as version n+1; version n stays in
-- movement_library untouched (immutable) and is superseded. movement_current points at the one
-- current version of each slug (its primary key enforces "exactly one"); retiring a movement
-- removes its pointer through an audited RETIRED step, and nothing is ever deleted.

CREATE TABLE movement_current (
    slug        text PRIMARY KEY,
    version     integer NOT NULL CHECK (version >= 1),
    library_id  bigint NOT NULL UNIQUE REFERENCES movement_library (id),
    since       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE movement_current IS
    'The current version of every live movement: one row per slug; retired slugs have none.';

INSERT INTO movement_current (slug, version, library_id, since)
SELECT DISTINCT ON (slug) slug, version, id, published_at
  FROM movement_library
 ORDER BY slug, version DESC;

-- A pointer names a library row of its own slug and version, and only ever moves forward.
-- Checked once per statement over the transition tables, so a bulk publish costs one query.
CREATE FUNCTION movement_current_check() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.slug, n.version, n.library_id INTO bad
      FROM new_pointers n
     WHERE NOT EXISTS (SELECT 1 FROM movement_library l
                        WHERE l.id = n.library_id AND l.slug = n.slug
                          AND l.version = n.version)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'movement_current: % version % is not library row %',
            bad.slug, bad.version, bad.library_id;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        SELECT o.slug, o.version AS old_version, n.version AS new_version INTO bad
          FROM old_pointers o JOIN new_pointers n ON n.slug = o.slug
         WHERE n.version <= o.version
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'movement_current: % can only move to a newer version (% -> %)',
                bad.slug, bad.old_version, bad.new_version;
        END IF;
        IF (SELECT count(*) FROM old_pointers) <> (SELECT count(*) FROM new_pointers o
                                                    JOIN old_pointers p ON p.slug = o.slug) THEN
            RAISE EXCEPTION 'movement_current: a pointer cannot change its slug';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER movement_current_check_insert
    AFTER INSERT ON movement_current
    REFERENCING NEW TABLE AS new_pointers
    FOR EACH STATEMENT EXECUTE FUNCTION movement_current_check();
CREATE TRIGGER movement_current_check_update
    AFTER UPDATE ON movement_current
    REFERENCING OLD TABLE AS old_pointers NEW TABLE AS new_pointers
    FOR EACH STATEMENT EXECUTE FUNCTION movement_current_check();

ALTER TABLE movement_audit_log DROP CONSTRAINT movement_audit_log_action_check;
ALTER TABLE movement_audit_log ADD CONSTRAINT movement_audit_log_action_check
    CHECK (action IN ('CREATED', 'REVIEW_SUBMITTED', 'APPROVED', 'PUBLISHED', 'RETIRED'));

ALTER TABLE movement_seed_run
    ADD COLUMN new_version_count integer NOT NULL DEFAULT 0 CHECK (new_version_count >= 0),
    ADD COLUMN retired_count integer NOT NULL DEFAULT 0 CHECK (retired_count >= 0);

-- The live catalogue: the current version of every movement that is not retired.
CREATE VIEW movement_library_current AS
SELECT l.*
  FROM movement_library l
  JOIN movement_current c ON c.library_id = l.id;

-- Every published version with its state.
CREATE VIEW movement_library_versions AS
SELECT l.slug, l.version, l.name, l.content_hash, l.published_at, l.published_by,
       CASE WHEN c.library_id = l.id THEN 'current'
            WHEN c.slug IS NULL THEN 'retired'
            ELSE 'superseded' END AS state,
       (SELECT min(n.version) FROM movement_library n
         WHERE n.slug = l.slug AND n.version > l.version) AS superseded_by
  FROM movement_library l
  LEFT JOIN movement_current c ON c.slug = l.slug;
