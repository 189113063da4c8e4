-- depends: 0005.movement-trust
-- The content hash of 0004 (the same text and sha256, except for the two kinds of document 0004
-- got wrong, below), computed at about half the cost:
-- the functions get SQL-standard bodies (RETURN ...), which PostgreSQL parses once, here, binding
-- every name they use to what it is now (no search_path is read when they run, as 0004's
-- SET search_path FROM CURRENT ensured), and which the planner inlines into the query that calls
-- them (0004's SET clause and STRICT each forbade that, and a call per list cost as much as the
-- hash). movement_content_hash is STABLE: convert_to is. The general way for any other document
-- (movement_canonical_any) is 0004's.

-- A string, or a list of strings (the caller checked), as canonical_bytes writes it. Without a
-- backslash no string holds a quote, so every quote in jsonb's text delimits a string and '", "'
-- is a separator, unless a string is exactly ', ' (its own two quotes around a comma and a
-- space). 0004 took that for a separator too: the list [', '] got the canonical form, and so the
-- hash, of [','], so a document differing from a reviewed one in that way was accepted under
-- the reviewed one's hash (other lists starting with ', ' got a text no document has, and their
-- rows were refused). A value holding ', ' now goes the general way, and the rows already
-- written are checked below.
CREATE OR REPLACE FUNCTION movement_canonical_list(list jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN strpos(list::text, '\') = 0 AND NOT list @> '", "'::jsonb
            THEN replace(list::text, '", "', '","')
            ELSE movement_canonical_any(list) END;

-- 0004's fast way for what a movement holds, with || and coalesce where it used concat_ws
-- (STABLE, so not inlined into an IMMUTABLE function): an absent key writes nothing. Every value
-- goes through movement_canonical_list, which writes a string as it is: 0004 wrote a scalar
-- field's value as jsonb does, so a list of strings where a movement has one value (which no
-- valid movement holds) got jsonb's ", " and a hash movelib never computes, and its row was
-- refused.
CREATE OR REPLACE FUNCTION movement_canonical(doc jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN jsonb_typeof(doc) = 'object'
     AND doc - ARRAY['aliases', 'classification', 'coaching_cues', 'equipment', 'force',
                     'instructions', 'laterality', 'level', 'mechanic', 'name',
                     'primary_muscles', 'secondary_muscles', 'slug'] = '{}'::jsonb
     -- each value a string or a list of strings; strict: lax mode unwrapped a nested list too,
     -- so 0004 took [["a"], ["b"]] for strings and wrote jsonb's "], [" and replaced the inner
     -- list's separators ([[", "]] got the canonical form of [[","]])
     AND NOT jsonb_path_exists(doc, 'strict $.* ? (@.type() != "string" && (@.type() != "array"
                                      || exists (@[*] ? (@.type() != "string"))))', '{}', true)
    THEN '{' || substr(
        coalesce(',"aliases":' || movement_canonical_list(doc -> 'aliases'), '') ||
        coalesce(',"classification":' || movement_canonical_list(doc -> 'classification'), '') ||
        coalesce(',"coaching_cues":' || movement_canonical_list(doc -> 'coaching_cues'), '') ||
        coalesce(',"equipment":' || movement_canonical_list(doc -> 'equipment'), '') ||
        coalesce(',"force":' || movement_canonical_list(doc -> 'force'), '') ||
        coalesce(',"instructions":' || movement_canonical_list(doc -> 'instructions'), '') ||
        coalesce(',"laterality":' || movement_canonical_list(doc -> 'laterality'), '') ||
        coalesce(',"level":' || movement_canonical_list(doc -> 'level'), '') ||
        coalesce(',"mechanic":' || movement_canonical_list(doc -> 'mechanic'), '') ||
        coalesce(',"name":' || movement_canonical_list(doc -> 'name'), '') ||
        coalesce(',"primary_muscles":' || movement_canonical_list(doc -> 'primary_muscles'), '') ||
        coalesce(',"secondary_muscles":' || movement_canonical_list(doc -> 'secondary_muscles'),
                 '') ||
        coalesce(',"slug":' || movement_canonical_list(doc -> 'slug'), ''), 2) || '}'
    ELSE movement_canonical_any(doc)
END;

CREATE OR REPLACE FUNCTION movement_content_hash(doc jsonb) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN encode(sha256(convert_to(movement_canonical(doc), 'UTF8')), 'hex');

-- Publishing, as 0004 checks it, in one pass over the rows written: each joined to its draft
-- once (0004 joined twice), two distinct approvers found per movement by a join the planner
-- sizes to the statement, as the first and last approver differing (0004 ran a correlated
-- count(DISTINCT) per row: 100k index scans and sorts on a seed of 100k; the count is made for
-- the message only), and the projection compared in the same pass; no LIMIT, so that the
-- planner sizes the joins for every row written (SELECT INTO stops at the first row found). That
-- row is named: for what stops it being published at all, else for its projection.
CREATE OR REPLACE FUNCTION movement_library_check_publish() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.slug, n.version, n.staging_id,
           s.status AS staging_status,
           s.content_hash = n.content_hash AS same_content,
           (s.id IS NULL OR s.slug <> n.slug OR s.version <> n.version
            OR s.status NOT IN ('approved', 'published') OR s.content_hash <> n.content_hash
            OR a.first_approver IS NULL OR a.first_approver = a.last_approver) AS unpublishable,
           movement_projection_differs(n, s.document) AS differs
      INTO bad
      FROM published_rows n
      LEFT JOIN movement_staging s ON s.id = n.staging_id
      LEFT JOIN (SELECT a.slug, a.version, min(a.actor) AS first_approver,
                        max(a.actor) AS last_approver
                   FROM movement_audit_log a
                  WHERE a.action = 'APPROVED'
                    AND (a.slug, a.version) IN (SELECT slug, version FROM published_rows)
                  GROUP BY a.slug, a.version) a
        ON a.slug = n.slug AND a.version = n.version
      LEFT JOIN LATERAL jsonb_to_record(s.document) AS d (slug text, name text,
           classification text, equipment text[], primary_muscles text[],
           secondary_muscles text[], level text, instructions text[], aliases text[],
           laterality text, force text, mechanic text, coaching_cues text[]) ON true
     WHERE s.id IS NULL
        OR s.slug <> n.slug OR s.version <> n.version
        OR s.status NOT IN ('approved', 'published')
        OR s.content_hash <> n.content_hash
        OR a.first_approver IS NULL OR a.first_approver = a.last_approver
        OR (n.slug, n.name, n.classification, n.equipment, n.primary_muscles,
            n.secondary_muscles, n.level, n.instructions, n.aliases, n.laterality, n.force,
            n.mechanic, n.coaching_cues)
           IS DISTINCT FROM
           (d.slug, d.name, d.classification, d.equipment, d.primary_muscles,
            d.secondary_muscles, d.level, d.instructions, coalesce(d.aliases, '{}'),
            d.laterality, d.force, d.mechanic, coalesce(d.coaching_cues, '{}'));
    IF NOT FOUND THEN
        RETURN NULL;
    ELSIF bad.unpublishable THEN
        RAISE EXCEPTION 'movement % version % cannot be published: draft status %, same content %, % distinct approval(s) (two are required)',
            bad.slug, bad.version, coalesce(bad.staging_status, 'missing'),
            coalesce(bad.same_content, false),
            (SELECT count(DISTINCT a.actor) FROM movement_audit_log a
              WHERE a.slug = bad.slug AND a.version = bad.version AND a.action = 'APPROVED');
    ELSE
        RAISE EXCEPTION 'movement % version % cannot be published: its % differ(s) from its approved document',
            bad.slug, bad.version, array_to_string(bad.differs, ', ')
            USING HINT = 'a library row is the projection of the draft it was published from';
    END IF;
END
$$;

-- An audit row's hash against its draft's, as 0004 checks it, planned for the whole statement:
-- 0004's LIMIT 1 had the planner expect a mismatch among the first rows and probe the draft
-- index once per row (500k probes on a seed of 100k) where a hash join reads the drafts once.
-- SELECT INTO still stops at the first row found. (No `details ? ...` test: a row that names no
-- hash compares as NULL, which is not a mismatch.)
CREATE OR REPLACE FUNCTION movement_audit_log_check_content() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.slug, n.version, n.action, n.details ->> 'content_hash' AS named
      INTO bad
      FROM written_audit n
      JOIN movement_staging s ON s.slug = n.slug AND s.version = n.version
     WHERE s.content_hash <> n.details ->> 'content_hash';
    IF FOUND THEN
        RAISE EXCEPTION 'audit row % of movement % version % names content_hash %, which is not its draft''s',
            bad.action, bad.slug, bad.version, bad.named;
    END IF;
    RETURN NULL;
END
$$;

-- What 0004 may have let in (a draft holding the string ', ', or lists in a list, hashed as
-- another document), checked once, now, for every draft, with the hash above: a database holding
-- one cannot take this migration.
DO $$
DECLARE
    bad record;
BEGIN
    SELECT s.slug, s.version INTO bad
      FROM movement_staging s
     WHERE movement_content_hash(s.document) IS DISTINCT FROM s.content_hash
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the draft of movement % version % has a content_hash that is not its document''s (migration 0004 computed some documents'' canonical form wrongly): this database holds content that was not reviewed',
            bad.slug, bad.version;
    END IF;
END
$$;
