-- depends: 0003.movement-provenance
-- Content is the truth: the database refuses rows that disagree with their reviewed document.
--
-- * movement_staging: content_hash must be the sha256 of the document's canonical form (sorted
--   keys, no spaces, UTF-8 text unescaped: movelib.datafile.canonical_bytes), computed here by
--   movement_content_hash from the document as stored.
-- * movement_library: every column must equal the projection of the draft document it was
--   published from (the same name, arrays in order, optional fields), with the same hash.
-- * movement_audit_log: a content_hash an audit row names must be that of its draft, when the
--   draft is there (movelib writes drafts first; pg_dump --data-only writes the audit log first,
--   and then inv verify is what names an audit row that disagrees).
--
-- Checked once per statement over the rows it wrote (a COPY too), so a bulk publish or a restore
-- costs one set-based query per table. Rows already there are checked once, here: a database
-- holding a row that disagrees cannot take this migration (it names the movement). Published
-- history is not rewritten.

-- The canonical text of any JSON value: what json.dumps(sort_keys=True, separators=(",", ":"),
-- ensure_ascii=False) writes. jsonb writes strings as json.dumps does (the same escapes), keys
-- are ordered by their UTF-8 bytes (code points, as Python's sort) whatever the server encoding.
-- A number is written as jsonb keeps it: integers and plain decimals as Python writes them.
CREATE OR REPLACE FUNCTION movement_canonical_any(doc jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
    SELECT CASE jsonb_typeof(doc)
        WHEN 'object' THEN '{' || coalesce((
            SELECT string_agg(to_jsonb(k)::text || ':' || movement_canonical_any(v), ','
                              ORDER BY convert_to(k, 'UTF8'))
              FROM jsonb_each(doc) AS e (k, v)), '') || '}'
        WHEN 'array' THEN '[' || coalesce((
            SELECT string_agg(movement_canonical_any(v), ',' ORDER BY i)
              FROM jsonb_array_elements(doc) WITH ORDINALITY AS e (v, i)), '') || ']'
        ELSE doc::text
    END
$$;

-- An array of strings (the caller checked): jsonb writes it as ["a", "b"]. Without a backslash
-- no string holds a quote (jsonb would escape it), so '", "' can only be a separator.
CREATE OR REPLACE FUNCTION movement_canonical_list(list jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
    SELECT CASE WHEN strpos(list::text, '\') = 0 THEN replace(list::text, '", "', '","')
                ELSE movement_canonical_any(list) END
$$;

-- The same text, fast for what a movement holds (the known keys, each a string or a list of
-- strings); any other document goes the general way.
CREATE OR REPLACE FUNCTION movement_canonical(doc jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
    SELECT CASE
        WHEN jsonb_typeof(doc) = 'object'
         AND doc - ARRAY['aliases', 'classification', 'coaching_cues', 'equipment', 'force',
                         'instructions', 'laterality', 'level', 'mechanic', 'name',
                         'primary_muscles', 'secondary_muscles', 'slug'] = '{}'::jsonb
         AND NOT jsonb_path_exists(doc, 'lax $.*[*] ? (@.type() != "string")')
        THEN '{' || concat_ws(',',
            '"aliases":' || movement_canonical_list(doc -> 'aliases'),
            '"classification":' || (doc -> 'classification')::text,
            '"coaching_cues":' || movement_canonical_list(doc -> 'coaching_cues'),
            '"equipment":' || movement_canonical_list(doc -> 'equipment'),
            '"force":' || (doc -> 'force')::text,
            '"instructions":' || movement_canonical_list(doc -> 'instructions'),
            '"laterality":' || (doc -> 'laterality')::text,
            '"level":' || (doc -> 'level')::text,
            '"mechanic":' || (doc -> 'mechanic')::text,
            '"name":' || (doc -> 'name')::text,
            '"primary_muscles":' || movement_canonical_list(doc -> 'primary_muscles'),
            '"secondary_muscles":' || movement_canonical_list(doc -> 'secondary_muscles'),
            '"slug":' || (doc -> 'slug')::text) || '}'
        ELSE movement_canonical_any(doc)
    END
$$;

CREATE OR REPLACE FUNCTION movement_content_hash(doc jsonb) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path FROM CURRENT AS $$
    SELECT encode(sha256(convert_to(movement_canonical(doc), 'UTF8')), 'hex')
$$;

-- The library columns a document projects to, by name, with what the document says; the
-- columns that differ from a library row (none: an empty array).
CREATE OR REPLACE FUNCTION movement_projection_differs(lib movement_library, doc jsonb) RETURNS text[]
LANGUAGE sql STABLE PARALLEL SAFE SET search_path FROM CURRENT AS $$
    SELECT array_remove(ARRAY[
        CASE WHEN lib.slug IS DISTINCT FROM d.slug THEN 'slug' END,
        CASE WHEN lib.name IS DISTINCT FROM d.name THEN 'name' END,
        CASE WHEN lib.classification IS DISTINCT FROM d.classification THEN 'classification' END,
        CASE WHEN lib.equipment IS DISTINCT FROM d.equipment THEN 'equipment' END,
        CASE WHEN lib.primary_muscles IS DISTINCT FROM d.primary_muscles THEN 'primary_muscles' END,
        CASE WHEN lib.secondary_muscles IS DISTINCT FROM d.secondary_muscles
             THEN 'secondary_muscles' END,
        CASE WHEN lib.level IS DISTINCT FROM d.level THEN 'level' END,
        CASE WHEN lib.instructions IS DISTINCT FROM d.instructions THEN 'instructions' END,
        CASE WHEN lib.aliases IS DISTINCT FROM coalesce(d.aliases, '{}') THEN 'aliases' END,
        CASE WHEN lib.laterality IS DISTINCT FROM d.laterality THEN 'laterality' END,
        CASE WHEN lib.force IS DISTINCT FROM d.force THEN 'force' END,
        CASE WHEN lib.mechanic IS DISTINCT FROM d.mechanic THEN 'mechanic' END,
        CASE WHEN lib.coaching_cues IS DISTINCT FROM coalesce(d.coaching_cues, '{}')
             THEN 'coaching_cues' END], NULL)
      FROM jsonb_to_record(doc) AS d (slug text, name text, classification text, equipment text[],
           primary_muscles text[], secondary_muscles text[], level text, instructions text[],
           aliases text[], laterality text, force text, mechanic text, coaching_cues text[])
$$;

CREATE OR REPLACE FUNCTION movement_staging_check_content() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.slug, n.version, n.content_hash, movement_content_hash(n.document) AS computed
      INTO bad
      FROM written_drafts n
     WHERE movement_content_hash(n.document) IS DISTINCT FROM n.content_hash
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'movement % version %: content_hash % is not the sha256 of its document''s canonical form (%)',
            bad.slug, bad.version, bad.content_hash, coalesce(bad.computed, 'none')
            USING HINT = 'the draft document is the content; its hash is derived from it';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER movement_staging_check_content_insert
    AFTER INSERT ON movement_staging
    REFERENCING NEW TABLE AS written_drafts
    FOR EACH STATEMENT EXECUTE FUNCTION movement_staging_check_content();

CREATE TRIGGER movement_staging_check_content_update
    AFTER UPDATE ON movement_staging
    REFERENCING NEW TABLE AS written_drafts
    FOR EACH STATEMENT EXECUTE FUNCTION movement_staging_check_content();

-- Publishing: everything 0001 checked, and the library row is its draft document's projection.
CREATE OR REPLACE FUNCTION movement_library_check_publish() RETURNS trigger
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
    SELECT n.slug, n.version, n.staging_id
      INTO bad
      FROM published_rows n
      JOIN movement_staging s ON s.id = n.staging_id,
           jsonb_to_record(s.document) AS d (slug text, name text, classification text,
               equipment text[], primary_muscles text[], secondary_muscles text[], level text,
               instructions text[], aliases text[], laterality text, force text, mechanic text,
               coaching_cues text[])
     WHERE (n.slug, n.name, n.classification, n.equipment, n.primary_muscles,
            n.secondary_muscles, n.level, n.instructions, n.aliases, n.laterality, n.force,
            n.mechanic, n.coaching_cues)
           IS DISTINCT FROM
           (d.slug, d.name, d.classification, d.equipment, d.primary_muscles,
            d.secondary_muscles, d.level, d.instructions, coalesce(d.aliases, '{}'),
            d.laterality, d.force, d.mechanic, coalesce(d.coaching_cues, '{}'))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'movement % version % cannot be published: its % differ(s) from its approved document',
            bad.slug, bad.version, (
                SELECT array_to_string(movement_projection_differs(l, s.document), ', ')
                  FROM published_rows l JOIN movement_staging s ON s.id = l.staging_id
                 WHERE l.staging_id = bad.staging_id)
            USING HINT = 'a library row is the projection of the draft it was published from';
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION movement_audit_log_check_content() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.slug, n.version, n.action, n.details ->> 'content_hash' AS named
      INTO bad
      FROM written_audit n
      JOIN movement_staging s ON s.slug = n.slug AND s.version = n.version
     WHERE n.details ? 'content_hash' AND s.content_hash <> n.details ->> 'content_hash'
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'audit row % of movement % version % names content_hash %, which is not its draft''s',
            bad.action, bad.slug, bad.version, bad.named;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER movement_audit_log_check_content
    AFTER INSERT ON movement_audit_log
    REFERENCING NEW TABLE AS written_audit
    FOR EACH STATEMENT EXECUTE FUNCTION movement_audit_log_check_content();

-- Each library version's content hash recomputed from what the database holds: the sha256 of
-- its draft document's canonical form, when the library row is that document's projection;
-- NULL when it is not (or has no draft). What inv verify and inv diff compare.
CREATE VIEW movement_library_content AS
SELECT l.id, l.slug, l.version, l.content_hash AS stored_hash,
       CASE WHEN (l.slug, l.name, l.classification, l.equipment, l.primary_muscles,
                  l.secondary_muscles, l.level, l.instructions, l.aliases, l.laterality, l.force,
                  l.mechanic, l.coaching_cues)
                 IS NOT DISTINCT FROM
                 (d.slug, d.name, d.classification, d.equipment, d.primary_muscles,
                  d.secondary_muscles, d.level, d.instructions, coalesce(d.aliases, '{}'),
                  d.laterality, d.force, d.mechanic, coalesce(d.coaching_cues, '{}'))
            THEN movement_content_hash(s.document) END AS content_hash,
       s.id AS staging_id, s.document
  FROM movement_library l
  LEFT JOIN movement_staging s ON s.id = l.staging_id
  LEFT JOIN LATERAL jsonb_to_record(s.document) AS d (slug text, name text, classification text,
       equipment text[], primary_muscles text[], secondary_muscles text[], level text,
       instructions text[], aliases text[], laterality text, force text, mechanic text,
       coaching_cues text[]) ON true;

-- Who signed a restored release, as verified at the restore (NULL: an unsigned or unverified
-- dump, whatever its manifest says). IF NOT EXISTS: the table belongs to the database (0003).
ALTER TABLE movement_provenance
    ADD COLUMN IF NOT EXISTS signed_by text,
    ADD COLUMN IF NOT EXISTS signer_key text;

-- What is already there is checked once, now.
DO $$
DECLARE
    bad record;
BEGIN
    SELECT 'draft' AS what, s.slug, s.version, 'content_hash' AS fields
      INTO bad FROM movement_staging s
     WHERE movement_content_hash(s.document) IS DISTINCT FROM s.content_hash
    UNION ALL
    SELECT 'audit row ' || a.action, a.slug, a.version, 'content_hash'
      FROM movement_audit_log a
      JOIN movement_staging s ON s.slug = a.slug AND s.version = a.version
     WHERE a.details ? 'content_hash' AND s.content_hash <> a.details ->> 'content_hash'
    UNION ALL
    SELECT 'library row', l.slug, l.version,
           coalesce(nullif(array_to_string(movement_projection_differs(l, s.document), ', '), ''),
                    'content_hash')
      FROM movement_library l JOIN movement_staging s ON s.id = l.staging_id
     WHERE movement_projection_differs(l, s.document) <> '{}' OR l.content_hash <> s.content_hash
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the % of movement % version % disagrees with its approved document (%): this database holds content that was not reviewed',
            bad.what, bad.slug, bad.version, bad.fields;
    END IF;
END
$$;
