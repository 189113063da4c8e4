-- depends: 0002.movement-versions
-- Where the library's content came from: one row per seed that wrote something and per
-- restore. The table belongs to the database, like its environment label: a seed dump does not
-- carry it and a restore does not drop it, so its history survives every restore (IF NOT
-- EXISTS: a dump of this migration, loaded onto a database that has the table, keeps it).
-- seed_run_id is not a foreign key: a restore replaces movement_seed_run, and the rows before
-- it no longer name one (the restore clears them).

CREATE TABLE IF NOT EXISTS movement_provenance (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind                   text NOT NULL CHECK (kind IN ('seed', 'restore')),
    data_file              text,
    data_sha256            text CHECK (data_sha256 ~ '^[0-9a-f]{64}$'),
    artifact_file          text,
    artifact_sha256        text CHECK (artifact_sha256 ~ '^[0-9a-f]{64}$'),
    release                text,
    tag                    text,
    source_environment     text,
    source_server_version  text,
    run_by                 text NOT NULL,
    recorded_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    seed_run_id            bigint,
    CHECK (kind <> 'seed' OR (data_sha256 IS NOT NULL AND artifact_sha256 IS NULL)),
    CHECK (kind <> 'restore' OR artifact_sha256 IS NOT NULL)
);
COMMENT ON TABLE movement_provenance IS
    'Where the library came from: each seed that wrote rows and each restore (inv verify prints the latest).';
