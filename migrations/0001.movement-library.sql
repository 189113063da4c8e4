-- The movement library, its review workflow and its audit trail.
--
-- A movement is drafted into movement_staging, submitted for review, approved by two distinct
-- reviewers (four-eyes rule, enforced below) and published into movement_library, where it is
-- immutable. Every step writes one row to the append-only movement_audit_log.

CREATE TABLE movement_environment (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    label      text NOT NULL CHECK (label IN ('local', 'staging', 'production')),
    set_at     timestamptz NOT NULL DEFAULT now(),
    set_by     text NOT NULL DEFAULT current_user
);
COMMENT ON TABLE movement_environment IS
    'The environment this database serves; set explicitly (inv migrate --environment).';

CREATE TABLE movement_seed_run (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    data_file         text NOT NULL,
    data_sha256       text NOT NULL CHECK (data_sha256 ~ '^[0-9a-f]{64}$'),
    movement_count    integer NOT NULL CHECK (movement_count >= 0),
    published_count   integer NOT NULL DEFAULT 0 CHECK (published_count >= 0),
    unchanged_count   integer NOT NULL DEFAULT 0 CHECK (unchanged_count >= 0),
    tool_version      text NOT NULL,
    run_by            text NOT NULL,
    db_user           text NOT NULL DEFAULT current_user,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz
);

CREATE TABLE movement_staging (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug          text NOT NULL,
    version       integer NOT NULL CHECK (version >= 1),
    status        text NOT NULL DEFAULT 'draft'
                  CHECK (status IN ('draft', 'in_review', 'approved', 'published')),
    document      jsonb NOT NULL,
    content_hash  text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    seed_run_id   bigint REFERENCES movement_seed_run (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (slug, version)
);
CREATE INDEX movement_staging_seed_run_idx ON movement_staging (seed_run_id);

CREATE TABLE movement_library (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug               text NOT NULL,
    version            integer NOT NULL CHECK (version >= 1),
    name               text NOT NULL,
    classification     text NOT NULL,
    equipment          text[] NOT NULL,
    primary_muscles    text[] NOT NULL,
    secondary_muscles  text[] NOT NULL,
    level              text NOT NULL,
    instructions       text[] NOT NULL,
    aliases            text[] NOT NULL DEFAULT '{}',
    laterality         text,
    force              text,
    mechanic           text,
    coaching_cues      text[] NOT NULL DEFAULT '{}',
    content_hash       text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    published_at       timestamptz NOT NULL DEFAULT now(),
    published_by       text NOT NULL,
    staging_id         bigint NOT NULL UNIQUE REFERENCES movement_staging (id),
    seed_run_id        bigint REFERENCES movement_seed_run (id),
    UNIQUE (slug, version)
);

CREATE TABLE movement_audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action        text NOT NULL
                  CHECK (action IN ('CREATED', 'REVIEW_SUBMITTED', 'APPROVED', 'PUBLISHED')),
    slug          text NOT NULL,
    version       integer NOT NULL,
    actor         text NOT NULL,
    occurred_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    seed_run_id   bigint REFERENCES movement_seed_run (id),
    details       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX movement_audit_log_movement_idx ON movement_audit_log (slug, version, action);

-- Published movements are immutable, whoever writes the SQL.
CREATE FUNCTION movement_library_immutable() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'Published movements cannot be edited'
        USING DETAIL = CASE WHEN TG_LEVEL = 'ROW'
                            THEN format('movement %s version %s', OLD.slug, OLD.version)
                            ELSE 'TRUNCATE of movement_library' END,
              HINT = 'Publish a new version of the movement instead.';
END
$$;
CREATE TRIGGER movement_library_no_update_delete
    BEFORE UPDATE OR DELETE ON movement_library
    FOR EACH ROW EXECUTE FUNCTION movement_library_immutable();
CREATE TRIGGER movement_library_no_truncate
    BEFORE TRUNCATE ON movement_library
    FOR EACH STATEMENT EXECUTE FUNCTION movement_library_immutable();

-- The audit trail is append-only.
CREATE FUNCTION movement_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'The movement audit log is append-only';
END
$$;
CREATE TRIGGER movement_audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON movement_audit_log
    FOR EACH ROW EXECUTE FUNCTION movement_audit_log_append_only();
CREATE TRIGGER movement_audit_log_no_truncate
    BEFORE TRUNCATE ON movement_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION movement_audit_log_append_only();

-- Drafts move one step at a time: draft -> in_review -> approved -> published; once a draft
-- is submitted its content is frozen.
CREATE FUNCTION movement_staging_transition() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    steps constant text[] := ARRAY['draft', 'in_review', 'approved', 'published'];
BEGIN
    IF NEW.slug <> OLD.slug OR NEW.version <> OLD.version THEN
        RAISE EXCEPTION 'a draft cannot change its slug or version';
    END IF;
    IF OLD.status <> 'draft'
       AND (NEW.document <> OLD.document OR NEW.content_hash <> OLD.content_hash) THEN
        RAISE EXCEPTION 'movement % version % is %: its content is frozen',
            OLD.slug, OLD.version, OLD.status;
    END IF;
    IF NEW.status <> OLD.status
       AND array_position(steps, NEW.status) <> array_position(steps, OLD.status) + 1 THEN
        RAISE EXCEPTION 'movement % version %: % -> % is not a workflow step',
            OLD.slug, OLD.version, OLD.status, NEW.status;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER movement_staging_transition
    BEFORE UPDATE ON movement_staging
    FOR EACH ROW EXECUTE FUNCTION movement_staging_transition();

CREATE FUNCTION movement_staging_no_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.status IN ('approved', 'published') THEN
        RAISE EXCEPTION 'movement % version % is %: it cannot be deleted',
            OLD.slug, OLD.version, OLD.status;
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER movement_staging_no_delete
    BEFORE DELETE ON movement_staging
    FOR EACH ROW EXECUTE FUNCTION movement_staging_no_delete();

-- Publishing needs an approved draft with the same content and two approvals by distinct
-- reviewers. Checked once per statement, so a bulk publish costs one set-based query. (A bulk
-- seed writes its drafts already 'published', inside the transaction that writes their library
-- rows; each row may be published once, as library.staging_id is unique.)
CREATE FUNCTION movement_library_check_publish() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.slug, n.version,
           s.status AS staging_status,
           s.content_hash = n.content_hash AS same_content,
           (SELECT count(DISTINCT a.actor) FROM movement_audit_log a
             WHERE a.slug = n.slug AND a.version = n.version
               AND a.action = 'APPROVED') AS approvals
      INTO bad
      FROM published_rows n
      LEFT JOIN movement_staging s ON s.id = n.staging_id
     WHERE s.id IS NULL
        OR s.slug <> n.slug OR s.version <> n.version
        OR s.status NOT IN ('approved', 'published')
        OR s.content_hash <> n.content_hash
        OR (SELECT count(DISTINCT a.actor) FROM movement_audit_log a
             WHERE a.slug = n.slug AND a.version = n.version AND a.action = 'APPROVED') < 2
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'movement % version % cannot be published: draft status %, same content %, % distinct approval(s) (two are required)',
            bad.slug, bad.version, coalesce(bad.staging_status, 'missing'),
            coalesce(bad.same_content, false), bad.approvals;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER movement_library_check_publish
    AFTER INSERT ON movement_library
    REFERENCING NEW TABLE AS published_rows
    FOR EACH STATEMENT EXECUTE FUNCTION movement_library_check_publish();
