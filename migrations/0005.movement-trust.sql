-- depends: 0004.movement-content
-- Whom this database trusts to sign the releases restored into it (TUF's root of trust, held by
-- the party protected): each signer's principal and public key, and how many distinct signers
-- must agree. A production-labelled database accepts a restore only with signatures by at least
-- the threshold's number of signers pinned here; no file the caller's environment names can
-- widen that. Like movement_provenance and the environment label, these tables belong to the
-- database: a dump neither carries nor drops them (IF NOT EXISTS, not in the dump's DROP line),
-- so no restore changes whom the database trusts. Every statement here may run again (a dump
-- carries this DDL; an older dump's restore applies it after its rows).
--
-- Every change is logged by the database itself (triggers), so a change made with psql is
-- logged too, with the role that made it; the log is append-only.

CREATE TABLE IF NOT EXISTS movement_trust_signer (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    principal    text NOT NULL CHECK (principal ~ '^[A-Za-z0-9._@+-]{1,200}$'),
    -- "<key type> <base64 of the key blob>", as in a .pub file or an allowed_signers line
    public_key   text NOT NULL CHECK (public_key ~ '^[a-z0-9.@-]{1,64} [A-Za-z0-9+/]+={0,2}$'
                                      AND length(public_key) <= 3000),
    -- ssh-keygen -l's SHA256 fingerprint, derived from the key: no writer can make them disagree
    fingerprint  text GENERATED ALWAYS AS ('SHA256:' || rtrim(encode(sha256(
                     decode(split_part(public_key, ' ', 2), 'base64')), 'base64'), '=')) STORED,
    pinned_by    text NOT NULL,
    pinned_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (fingerprint)
);
COMMENT ON TABLE movement_trust_signer IS
    'The signers whose release signatures a production restore accepts (inv trust.pin).';

CREATE TABLE IF NOT EXISTS movement_trust_threshold (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    threshold  integer NOT NULL CHECK (threshold BETWEEN 1 AND 16),
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE movement_trust_threshold IS
    'How many distinct pinned signers a production restore needs (1 without a row).';

CREATE TABLE IF NOT EXISTS movement_trust_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change       text NOT NULL CHECK (change IN ('pin', 'unpin', 'threshold')),
    principal    text,
    fingerprint  text,
    public_key   text,
    threshold    integer,
    changed_by   text NOT NULL,  -- movelib's user@host, else the database role
    db_user      text NOT NULL DEFAULT session_user,
    changed_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE movement_trust_log IS
    'Every change of whom the database trusts (who, when, what); append-only.';

-- Who: the run's user@host, which movelib sets for its transaction only (pooler-safe), else the
-- role of a hand-written session.
CREATE OR REPLACE FUNCTION movement_trust_record() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    who text := coalesce(nullif(current_setting('movelib.run_by', true), ''), session_user);
BEGIN
    IF TG_TABLE_NAME = 'movement_trust_signer' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO movement_trust_log (change, principal, fingerprint, public_key, changed_by)
            VALUES ('pin', NEW.principal, NEW.fingerprint, NEW.public_key, who);
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO movement_trust_log (change, principal, fingerprint, public_key, changed_by)
            VALUES ('unpin', OLD.principal, OLD.fingerprint, OLD.public_key, who);
        ELSE
            RAISE EXCEPTION 'a pinned signer is not edited: unpin it and pin the new one'
                USING ERRCODE = 'restrict_violation';
        END IF;
    ELSE
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'the trust threshold is set, never deleted (inv trust.threshold N)'
                USING ERRCODE = 'restrict_violation';
        END IF;
        INSERT INTO movement_trust_log (change, threshold, changed_by)
        VALUES ('threshold', NEW.threshold, who);
    END IF;
    RETURN NULL;
END;
$$;

-- TRUNCATE fires no row trigger: it would change the trust unlogged, so it is refused.
CREATE OR REPLACE FUNCTION movement_trust_no_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is not truncated: every change of the trust is logged (inv trust.unpin)',
        TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE OR REPLACE FUNCTION movement_trust_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'movement_trust_log is append-only' USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE OR REPLACE TRIGGER movement_trust_signer_logged
    AFTER INSERT OR UPDATE OR DELETE ON movement_trust_signer
    FOR EACH ROW EXECUTE FUNCTION movement_trust_record();
CREATE OR REPLACE TRIGGER movement_trust_threshold_logged
    AFTER INSERT OR UPDATE OR DELETE ON movement_trust_threshold
    FOR EACH ROW EXECUTE FUNCTION movement_trust_record();
CREATE OR REPLACE TRIGGER movement_trust_signer_no_truncate
    BEFORE TRUNCATE ON movement_trust_signer
    FOR EACH STATEMENT EXECUTE FUNCTION movement_trust_no_truncate();
CREATE OR REPLACE TRIGGER movement_trust_threshold_no_truncate
    BEFORE TRUNCATE ON movement_trust_threshold
    FOR EACH STATEMENT EXECUTE FUNCTION movement_trust_no_truncate();
CREATE OR REPLACE TRIGGER movement_trust_log_no_update_delete
    BEFORE UPDATE OR DELETE ON movement_trust_log
    FOR EACH ROW EXECUTE FUNCTION movement_trust_log_append_only();
CREATE OR REPLACE TRIGGER movement_trust_log_no_truncate
    BEFORE TRUNCATE ON movement_trust_log
    FOR EACH STATEMENT EXECUTE FUNCTION movement_trust_log_append_only();
