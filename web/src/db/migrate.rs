//! Schema migrations: brings a database to the newest PostfixAdmin-compatible schema.
//!
//! Owns the embedded `migrations/{sqlite,mysql,postgres}/*.sql` files and the runner that applies
//! them. Versioning is PostfixAdmin's own: the schema revision lives in `config` (`name =
//! 'version'`), so a stock PostfixAdmin 3.3 database (revision 1844..=1847) is recognised and
//! upgraded in place, and a database created here can be opened by PostfixAdmin 4.x/master.
//! It does not touch rows other than `config.version`, and it never downgrades.
//!
//! Entry points: [`run`] (migrate), [`current_version`] (read only), [`NEWEST`].
//!
//! Per revision the runner applies one file inside a transaction (SQLite takes the write lock
//! up front with `BEGIN IMMEDIATE`; PostgreSQL DDL is transactional) and stamps `config.version`
//! in the same transaction. MySQL/MariaDB commit DDL implicitly, so there the statements run one
//! by one; a statement that fails because its object already exists (a rerun after a half-applied
//! file) counts as done, as PostfixAdmin's own `_db_add_field()` does. Concurrent runners on
//! several nodes serialise on an advisory lock (PostgreSQL `pg_advisory_lock`, MySQL `GET_LOCK`)
//! or on SQLite's write lock, re-reading the version before each step.

use std::fmt;

use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Row};

/// One schema revision: its PostfixAdmin revision number and the SQL for each engine.
struct Migration {
    revision: i64,
    name: &'static str,
    sqlite: &'static str,
    mysql: &'static str,
    postgres: &'static str,
}

impl Migration {
    fn sql(&self, engine: Engine) -> &'static str {
        match engine {
            Engine::Sqlite => self.sqlite,
            Engine::MySql => self.mysql,
            Engine::Postgres => self.postgres,
        }
    }
}

macro_rules! migration {
    ($rev:literal, $file:literal) => {
        Migration {
            revision: $rev,
            name: $file,
            sqlite: include_str!(concat!("../../../migrations/sqlite/", $file)),
            mysql: include_str!(concat!("../../../migrations/mysql/", $file)),
            postgres: include_str!(concat!("../../../migrations/postgres/", $file)),
        }
    };
}

/// Every revision, oldest first. The first one is the complete 3.3.16 schema for an empty database.
const MIGRATIONS: &[Migration] = &[
    migration!(1847, "1847_postfixadmin_3_3.sql"),
    migration!(1848, "1848_dkim.sql"),
    migration!(1849, "1849_totp_app_passwords.sql"),
    migration!(1850, "1850_smtp_active.sql"),
    migration!(1851, "1851_app_password_fix.sql"),
    migration!(1852, "1852_indexes.sql"),
    migration!(1853, "1853_totp_exception_timestamps.sql"),
    migration!(1854, "1854_descriptions.sql"),
    migration!(1856, "1856_admin_preferences.sql"),
];

/// Postern's own indexes for the panel's listings (`postern_indexes.sql`). Not a PostfixAdmin
/// revision — a number of ours would collide with a future PostfixAdmin one — so nothing is
/// stamped: after the versioned steps every run creates whichever are missing
/// ([`apply_postern_indexes`]). PostfixAdmin ignores them.
const POSTERN_INDEXES: Migration = Migration {
    revision: 0,
    name: "postern_indexes.sql",
    sqlite: include_str!("../../../migrations/sqlite/postern_indexes.sql"),
    mysql: include_str!("../../../migrations/mysql/postern_indexes.sql"),
    postgres: include_str!("../../../migrations/postgres/postern_indexes.sql"),
};

/// PostgreSQL's trigram indexes for substring searches, needing the `pg_trgm` extension. Optional:
/// where the extension cannot be created the file is rolled back with a warning.
const POSTGRES_TRGM: &str = include_str!("../../../migrations/postgres/postern_trgm.sql");

/// PostfixAdmin 3.3 databases at 1844..=1846 differ from 1847 only in MySQL character sets
/// (upgrade_1845, upgrade_1847_mysql); this brings them to 1847.
const CATCH_UP_3_3: Migration = Migration {
    revision: BASELINE,
    name: "catchup_1844_1847.sql",
    sqlite: "",
    mysql: include_str!("../../../migrations/mysql/catchup_1844_1847.sql"),
    postgres: "",
};

/// The revision of the full schema file (PostfixAdmin 3.3.16).
const BASELINE: i64 = 1847;
/// The oldest stock PostfixAdmin revision upgraded in place (3.3.16's `$min_db_version`).
pub const OLDEST_SUPPORTED: i64 = 1844;
/// The newest revision this build knows.
pub const NEWEST: i64 = 1856;

/// Advisory lock key for PostgreSQL (any constant; "PSTN").
const PG_LOCK_KEY: i64 = 0x5053_544E;
/// Named lock for MySQL/MariaDB.
const MYSQL_LOCK: &str = "postern_migrate";
/// Seconds a MySQL runner waits for another node's migration.
const MYSQL_LOCK_WAIT_SECS: u32 = 600;

/// What [`run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Revision found (0 = empty database).
    pub from: i64,
    /// Revision now stamped in `config.version`.
    pub to: i64,
    /// Revisions applied, in order (empty when the database was current).
    pub applied: Vec<i64>,
}

/// The SQL dialect behind an `AnyPool` (the migration files' directory names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Sqlite,
    MySql,
    Postgres,
}

impl Engine {
    /// From `AnyConnection::backend_name()` ("SQLite", "MySQL", "PostgreSQL").
    fn from_backend_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sqlite" => Some(Self::Sqlite),
            "mysql" | "mariadb" => Some(Self::MySql),
            "postgresql" | "postgres" => Some(Self::Postgres),
            _ => None,
        }
    }
}

impl Engine {
    fn dir(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::MySql => "mysql",
            Self::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("unsupported database backend {0:?} (expected SQLite, MySQL/MariaDB or PostgreSQL)")]
    UnsupportedBackend(String),
    #[error(
        "database schema is at revision {found}, newer than the newest this Postern knows \
         ({newest}); upgrade Postern or point it at another database"
    )]
    TooNew { found: i64, newest: i64 },
    #[error(
        "database schema is at PostfixAdmin revision {found}, older than PostfixAdmin 3.3 \
         ({oldest}); upgrade it with PostfixAdmin 3.3's setup.php first"
    )]
    TooOld { found: i64, oldest: i64 },
    #[error("config.version holds {0:?}, which is not a revision number")]
    BadVersion(String),
    #[error("migration {revision} ({file}, {engine}) failed at statement {index}: {source}")]
    Statement {
        revision: i64,
        file: &'static str,
        /// `sqlite`, `mysql` or `postgres`: the directory the file is in.
        engine: &'static str,
        /// 1-based position of the failing statement in the file.
        index: usize,
        #[source]
        source: sqlx::Error,
    },
    #[error("Postern's indexes ({file}, {engine}) failed at statement {index}: {source}")]
    PosternIndex {
        file: &'static str,
        engine: &'static str,
        index: usize,
        #[source]
        source: sqlx::Error,
    },
    #[error("database error while migrating: {0}")]
    Db(#[from] sqlx::Error),
}

/// Migrates the database behind `pool` to [`NEWEST`].
///
/// An empty database (no `config` table, or no `version` row) gets the full schema; a stock
/// PostfixAdmin database at 1844 or later is upgraded in place; a newer one is refused.
pub async fn run(pool: &AnyPool) -> Result<MigrateReport, MigrateError> {
    let mut conn = pool.acquire().await?;
    let engine = engine_of(&conn)?;
    lock(engine, &mut conn).await?;
    let result = run_locked(engine, &mut conn).await;
    let unlocked = unlock(engine, &mut conn).await;
    let report = result?;
    unlocked?;
    Ok(report)
}

/// The revision stamped in the database (0 when there is none), without changing anything.
pub async fn current_version(pool: &AnyPool) -> Result<i64, MigrateError> {
    let mut conn = pool.acquire().await?;
    let engine = engine_of(&conn)?;
    read_version(engine, &mut conn).await
}

fn engine_of(conn: &AnyConnection) -> Result<Engine, MigrateError> {
    let name = conn.backend_name();
    Engine::from_backend_name(name).ok_or_else(|| MigrateError::UnsupportedBackend(name.into()))
}

/// The migrations still to apply to a database at `from`, or why none can be.
fn plan(from: i64) -> Result<Vec<&'static Migration>, MigrateError> {
    if from > NEWEST {
        return Err(MigrateError::TooNew {
            found: from,
            newest: NEWEST,
        });
    }
    if from < 0 || (from > 0 && from < OLDEST_SUPPORTED) {
        return Err(MigrateError::TooOld {
            found: from,
            oldest: OLDEST_SUPPORTED,
        });
    }
    let mut steps: Vec<&'static Migration> = Vec::new();
    let mut after = from;
    if (OLDEST_SUPPORTED..BASELINE).contains(&from) {
        steps.push(&CATCH_UP_3_3);
        after = BASELINE;
    }
    steps.extend(MIGRATIONS.iter().filter(|m| m.revision > after));
    Ok(steps)
}

async fn run_locked(
    engine: Engine,
    conn: &mut AnyConnection,
) -> Result<MigrateReport, MigrateError> {
    let from = read_version(engine, conn).await?;
    let steps = plan(from)?;
    let mut current = from;
    let mut applied = Vec::new();
    for step in steps {
        if step.revision <= current {
            continue;
        }
        let done = match engine {
            Engine::MySql => apply_mysql(step, conn, current).await?,
            Engine::Sqlite | Engine::Postgres => {
                apply_in_transaction(engine, step, conn, current).await?
            }
        };
        match done {
            Step::Applied => {
                applied.push(step.revision);
                current = step.revision;
            }
            // Another node got there first; continue from what it left.
            Step::Skipped(now) => current = now,
        }
    }
    if current == NEWEST {
        apply_postern_indexes(engine, conn).await?;
    }
    Ok(MigrateReport {
        from,
        to: current,
        applied,
    })
}

enum Step {
    Applied,
    Skipped(i64),
}

async fn apply_in_transaction(
    engine: Engine,
    step: &Migration,
    conn: &mut AnyConnection,
    expected: i64,
) -> Result<Step, MigrateError> {
    let mut tx = match engine {
        // Take the write lock now, so two processes cannot both read `expected` and then collide.
        Engine::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
        _ => conn.begin().await?,
    };
    let now = read_version(engine, &mut tx).await?;
    if now != expected {
        tx.rollback().await?;
        return if now > NEWEST {
            Err(MigrateError::TooNew {
                found: now,
                newest: NEWEST,
            })
        } else {
            Ok(Step::Skipped(now))
        };
    }
    for (i, stmt) in statements(step.sql(engine)).into_iter().enumerate() {
        sqlx::raw_sql(stmt)
            .execute(&mut *tx)
            .await
            .map_err(|source| MigrateError::Statement {
                revision: step.revision,
                file: step.name,
                engine: engine.dir(),
                index: i + 1,
                source,
            })?;
    }
    stamp(step.revision, &mut tx).await?;
    tx.commit().await?;
    Ok(Step::Applied)
}

async fn apply_mysql(
    step: &Migration,
    conn: &mut AnyConnection,
    expected: i64,
) -> Result<Step, MigrateError> {
    // The named lock is held, so nobody else migrates; the check only guards against a stale read.
    let now = read_version(Engine::MySql, conn).await?;
    if now != expected {
        return Ok(Step::Skipped(now));
    }
    for (i, stmt) in statements(step.mysql).into_iter().enumerate() {
        if let Err(source) = sqlx::raw_sql(stmt).execute(&mut *conn).await
            && !mysql_already_done(&source)
        {
            return Err(MigrateError::Statement {
                revision: step.revision,
                file: step.name,
                engine: Engine::MySql.dir(),
                index: i + 1,
                source,
            });
        }
    }
    stamp(step.revision, conn).await?;
    Ok(Step::Applied)
}

/// Creates whichever of Postern's own indexes are missing ([`POSTERN_INDEXES`]): `IF NOT EXISTS`
/// on SQLite and PostgreSQL (plus the optional trigram indexes there), a look-up in
/// `information_schema.statistics` before each `ALTER TABLE` on MySQL.
async fn apply_postern_indexes(
    engine: Engine,
    conn: &mut AnyConnection,
) -> Result<(), MigrateError> {
    let failed = |index: usize| {
        move |source| MigrateError::PosternIndex {
            file: POSTERN_INDEXES.name,
            engine: engine.dir(),
            index,
            source,
        }
    };
    let sql = statements(POSTERN_INDEXES.sql(engine));
    if engine == Engine::MySql {
        for (i, stmt) in sql.into_iter().enumerate() {
            if let Some((table, index)) = mysql_added_index(stmt) {
                let present: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.statistics \
                     WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?",
                )
                .bind(table)
                .bind(index)
                .fetch_one(&mut *conn)
                .await
                .map_err(failed(i + 1))?;
                if present > 0 {
                    continue;
                }
            }
            if let Err(source) = sqlx::raw_sql(stmt).execute(&mut *conn).await
                && !mysql_already_done(&source)
            {
                return Err(failed(i + 1)(source));
            }
        }
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    for (i, stmt) in sql.into_iter().enumerate() {
        sqlx::raw_sql(stmt)
            .execute(&mut *tx)
            .await
            .map_err(failed(i + 1))?;
    }
    tx.commit().await?;
    if engine == Engine::Postgres {
        let mut tx = conn.begin().await?;
        let mut error = None;
        for stmt in statements(POSTGRES_TRGM) {
            if let Err(e) = sqlx::raw_sql(stmt).execute(&mut *tx).await {
                error = Some(e);
                break;
            }
        }
        match error {
            None => tx.commit().await?,
            Some(e) => {
                tx.rollback().await?;
                tracing::warn!(
                    error = %e,
                    "pg_trgm trigram indexes not created (postern_trgm.sql): mailbox and alias \
                     searches will scan their tables"
                );
            }
        }
    }
    Ok(())
}

/// The table and index an ``ALTER TABLE `t` ADD INDEX `name` (…)`` statement adds.
fn mysql_added_index(stmt: &str) -> Option<(&str, &str)> {
    let rest = stmt.trim_start().strip_prefix("ALTER TABLE `")?;
    let (table, rest) = rest.split_once('`')?;
    let rest = rest.trim_start().strip_prefix("ADD INDEX `")?;
    let (index, _) = rest.split_once('`')?;
    Some((table, index))
}

/// MySQL errors that mean "this DDL already ran": a rerun after a half-applied file.
fn mysql_already_done(err: &sqlx::Error) -> bool {
    // ER_TABLE_EXISTS_ERROR, ER_DUP_FIELDNAME, ER_DUP_KEYNAME, ER_FK_DUP_NAME
    const CODES: [u16; 4] = [1050, 1060, 1061, 1826];
    err.as_database_error()
        .and_then(|e| e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|e| CODES.contains(&e.number()))
}

/// Writes `revision` into `config.version` (inserting the row when PostfixAdmin's
/// `check_db_version()` has not).
async fn stamp(revision: i64, conn: &mut AnyConnection) -> Result<(), MigrateError> {
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM config WHERE name = 'version'")
        .fetch_one(&mut *conn)
        .await?;
    // `revision` is an integer from the static table: formatting it into the SQL is safe, and
    // avoids the placeholder syntax that differs between engines under `Any`.
    let sql = if rows == 0 {
        format!("INSERT INTO config (name, value) VALUES ('version', '{revision}')")
    } else {
        format!("UPDATE config SET value = '{revision}' WHERE name = 'version'")
    };
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The revision in `config.version`: 0 without a `config` table or without the row.
async fn read_version(engine: Engine, conn: &mut AnyConnection) -> Result<i64, MigrateError> {
    let exists: bool = match engine {
        Engine::Sqlite => {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'config'",
            )
            .fetch_one(&mut *conn)
            .await?;
            n > 0
        }
        Engine::MySql => {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = 'config'",
            )
            .fetch_one(&mut *conn)
            .await?;
            n > 0
        }
        Engine::Postgres => {
            sqlx::query_scalar("SELECT to_regclass('config') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?
        }
    };
    if !exists {
        return Ok(0);
    }
    let row = sqlx::query("SELECT value FROM config WHERE name = 'version'")
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(0) };
    let value: String = row.try_get(0)?;
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| MigrateError::BadVersion(value))
}

async fn lock(engine: Engine, conn: &mut AnyConnection) -> Result<(), MigrateError> {
    match engine {
        Engine::Sqlite => {}
        Engine::Postgres => {
            // pg_advisory_lock returns void, which `Any` cannot decode: count the row instead.
            let sql = format!("SELECT COUNT(*) FROM (SELECT pg_advisory_lock({PG_LOCK_KEY})) AS l");
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await?;
        }
        Engine::MySql => {
            let sql = format!("SELECT GET_LOCK('{MYSQL_LOCK}', {MYSQL_LOCK_WAIT_SECS})");
            let got: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(&mut *conn)
                .await?;
            if got != Some(1) {
                return Err(MigrateError::Db(sqlx::Error::Protocol(format!(
                    "could not take MySQL lock {MYSQL_LOCK:?} within {MYSQL_LOCK_WAIT_SECS}s \
                     (another node migrating?)"
                ))));
            }
        }
    }
    Ok(())
}

async fn unlock(engine: Engine, conn: &mut AnyConnection) -> Result<(), MigrateError> {
    let sql = match engine {
        Engine::Sqlite => return Ok(()),
        Engine::Postgres => format!("SELECT pg_advisory_unlock({PG_LOCK_KEY})"),
        Engine::MySql => format!("SELECT RELEASE_LOCK('{MYSQL_LOCK}')"),
    };
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Splits a migration file into statements: a statement ends at a line whose last character
/// is `;`, except inside a `$$ … $$` body (PostgreSQL functions). Lines starting with `--`
/// never end a statement, and comment lines before a statement are dropped.
fn statements(sql: &'static str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_dollar = false;
    let mut pos = 0;
    for line in sql.split_inclusive('\n') {
        let line_start = pos;
        pos += line.len();
        let text = line.trim();
        if text.starts_with("--") {
            continue;
        }
        if text.matches("$$").count() % 2 == 1 {
            in_dollar = !in_dollar;
        }
        if !in_dollar && text.ends_with(';') {
            let end = line_start + line.trim_end().len() - 1;
            push_statement(&mut out, &sql[start..end]);
            start = pos;
        }
    }
    push_statement(&mut out, &sql[start..]);
    out
}

fn push_statement(out: &mut Vec<&'static str>, mut chunk: &'static str) {
    loop {
        chunk = chunk.trim_start();
        if chunk.starts_with("--") {
            chunk = chunk.split_once('\n').map_or("", |(_, rest)| rest);
        } else {
            break;
        }
    }
    let chunk = chunk.trim_end();
    if !chunk.is_empty() {
        out.push(chunk);
    }
}

#[cfg(test)]
#[path = "../../tests/support/peers.rs"]
mod test_peers;

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::any::AnyPoolOptions;

    /// Every table and its columns, in order, as the newest schema has them on SQLite.
    const SQLITE_SCHEMA: &[(&str, &[&str])] = &[
        ("config", &["id", "name", "value"]),
        (
            "admin",
            &[
                "username",
                "password",
                "superadmin",
                "created",
                "modified",
                "active",
                "phone",
                "email_other",
                "token",
                "token_validity",
                "totp_secret",
            ],
        ),
        (
            "alias",
            &[
                "address",
                "goto",
                "domain",
                "created",
                "modified",
                "active",
                "description",
            ],
        ),
        (
            "alias_domain",
            &[
                "alias_domain",
                "target_domain",
                "created",
                "modified",
                "active",
                "description",
            ],
        ),
        (
            "domain",
            &[
                "domain",
                "description",
                "aliases",
                "mailboxes",
                "maxquota",
                "quota",
                "transport",
                "backupmx",
                "created",
                "modified",
                "active",
                "password_expiry",
            ],
        ),
        (
            "domain_admins",
            &["username", "domain", "created", "active"],
        ),
        (
            "fetchmail",
            &[
                "id",
                "domain",
                "mailbox",
                "src_server",
                "src_auth",
                "src_user",
                "src_password",
                "src_folder",
                "poll_time",
                "fetchall",
                "keep",
                "protocol",
                "usessl",
                "sslcertck",
                "sslcertpath",
                "sslfingerprint",
                "extra_options",
                "returned_text",
                "mda",
                "date",
                "created",
                "modified",
                "active",
                "src_port",
            ],
        ),
        (
            "log",
            &["id", "timestamp", "username", "domain", "action", "data"],
        ),
        (
            "mailbox",
            &[
                "username",
                "password",
                "name",
                "maildir",
                "quota",
                "local_part",
                "domain",
                "created",
                "modified",
                "active",
                "phone",
                "email_other",
                "token",
                "token_validity",
                "password_expiry",
                "totp_secret",
                "smtp_active",
            ],
        ),
        ("quota", &["username", "path", "current"]),
        ("quota2", &["username", "bytes", "messages"]),
        (
            "vacation",
            &[
                "email",
                "subject",
                "body",
                "activefrom",
                "activeuntil",
                "cache",
                "domain",
                "interval_time",
                "created",
                "modified",
                "active",
            ],
        ),
        (
            "vacation_notification",
            &["on_vacation", "notified", "notified_at"],
        ),
        (
            "dkim",
            &[
                "id",
                "domain_name",
                "description",
                "selector",
                "private_key",
                "public_key",
                "created",
                "modified",
            ],
        ),
        (
            "dkim_signing",
            &["id", "author", "dkim_id", "created", "modified"],
        ),
        (
            "totp_exception_address",
            &["id", "ip", "username", "description", "created", "modified"],
        ),
        (
            "mailbox_app_password",
            &["id", "username", "description", "password_hash"],
        ),
        ("admin_preferences", &["username", "pref_key", "pref_value"]),
    ];

    async fn sqlite_pool(dir: &tempfile::TempDir) -> AnyPool {
        sqlx::any::install_default_drivers();
        let path = dir.path().join("t.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        match AnyPoolOptions::new().max_connections(2).connect(&url).await {
            Ok(p) => p,
            Err(e) => panic!("open {url}: {e}"),
        }
    }

    /// `(name, type, notnull, default, pk)` of every column of every table, sorted by table.
    async fn sqlite_columns(pool: &AnyPool) -> Vec<(String, Vec<String>)> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        let mut out = Vec::new();
        for t in tables {
            let sql = format!(
                "SELECT name || '|' || type || '|' || \"notnull\" || '|' || \
                 COALESCE(dflt_value, 'NULL') || '|' || pk FROM pragma_table_info('{t}')"
            );
            let cols: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .unwrap_or_default();
            out.push((t, cols));
        }
        out
    }

    async fn sqlite_indexes(pool: &AnyPool) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT tbl_name || '.' || name FROM sqlite_master WHERE type = 'index' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(pool)
        .await
        .unwrap_or_default()
    }

    async fn exec(pool: &AnyPool, sql: &'static str) {
        if let Err(e) = sqlx::raw_sql(sql).execute(pool).await {
            panic!("{sql}: {e}");
        }
    }

    /// Every MySQL statement of Postern's index file names its table and index, so a run
    /// can see it is there before touching the table.
    #[test]
    fn postern_mysql_indexes_are_looked_up() {
        let stmts = statements(POSTERN_INDEXES.mysql);
        assert!(!stmts.is_empty());
        for stmt in stmts {
            assert!(mysql_added_index(stmt).is_some(), "{stmt}");
        }
        assert_eq!(
            mysql_added_index("ALTER TABLE `mailbox` ADD INDEX `x_y` (`domain`)"),
            Some(("mailbox", "x_y"))
        );
        assert_eq!(
            mysql_added_index("CREATE INDEX x ON mailbox (domain)"),
            None
        );
    }

    #[test]
    fn splits_statements() {
        let sql = "-- head\n\nCREATE TABLE a (x int);\n-- note;\nINSERT INTO a VALUES (1);\n\
                   CREATE FUNCTION f() RETURNS TRIGGER AS $$\nBEGIN\n  RETURN NULL;\nEND;\n$$ LANGUAGE plpgsql;\n\
                   trailing";
        assert_eq!(
            statements(sql),
            vec![
                "CREATE TABLE a (x int)",
                "INSERT INTO a VALUES (1)",
                "CREATE FUNCTION f() RETURNS TRIGGER AS $$\nBEGIN\n  RETURN NULL;\nEND;\n$$ LANGUAGE plpgsql",
                "trailing",
            ]
        );
        assert!(statements("-- only a comment\n").is_empty());
    }

    #[test]
    fn table_is_ordered_and_complete() {
        let revs: Vec<i64> = MIGRATIONS.iter().map(|m| m.revision).collect();
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "{revs:?}");
        assert_eq!(revs.first(), Some(&BASELINE));
        assert_eq!(revs.last(), Some(&NEWEST));
        for m in MIGRATIONS {
            for e in [Engine::Sqlite, Engine::MySql, Engine::Postgres] {
                // every statement ends where the splitter expects: no stray ';' inside a line end
                for s in statements(m.sql(e)) {
                    assert!(!s.ends_with(';'), "{} {e}: {s}", m.name);
                }
            }
        }
        // the full schema and every file that does something is non-empty
        assert!(!statements(MIGRATIONS[0].mysql).is_empty());
        assert!(!statements(MIGRATIONS[0].postgres).is_empty());
        assert!(!statements(MIGRATIONS[0].sqlite).is_empty());
    }

    #[test]
    fn plan_covers_every_start() {
        let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.revision).collect();
        let revs = |from| plan(from).map(|p| p.iter().map(|m| m.revision).collect::<Vec<_>>());
        assert_eq!(revs(0).ok(), Some(all.clone()));
        assert_eq!(revs(1847).ok(), Some(all[1..].to_vec()));
        assert_eq!(revs(1845).ok(), Some(all.clone()));
        assert_eq!(revs(1855).ok(), Some(vec![1856]));
        assert_eq!(revs(NEWEST).ok(), Some(vec![]));
        assert!(matches!(plan(NEWEST + 1), Err(MigrateError::TooNew { .. })));
        assert!(matches!(plan(1843), Err(MigrateError::TooOld { .. })));
        assert!(matches!(plan(-1), Err(MigrateError::TooOld { .. })));
    }

    #[tokio::test]
    async fn fresh_sqlite_gets_every_table_and_column() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let pool = sqlite_pool(&dir).await;
        assert_eq!(current_version(&pool).await.ok(), Some(0));
        let report = run(&pool).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.from, 0);
        assert_eq!(report.to, NEWEST);
        assert_eq!(
            report.applied,
            MIGRATIONS.iter().map(|m| m.revision).collect::<Vec<_>>()
        );
        assert_eq!(current_version(&pool).await.ok(), Some(NEWEST));

        let found = sqlite_columns(&pool).await;
        assert_eq!(found.len(), SQLITE_SCHEMA.len(), "{found:?}");
        for (table, want) in SQLITE_SCHEMA {
            let Some((_, cols)) = found.iter().find(|(t, _)| t == table) else {
                panic!("table {table} missing")
            };
            let names: Vec<&str> = cols.iter().filter_map(|c| c.split('|').next()).collect();
            assert_eq!(&names, want, "columns of {table}");
        }
        // spot checks of types and defaults the panel and Dovecot rely on
        let col = |t: &str, c: &str| {
            found
                .iter()
                .find(|(tt, _)| tt == t)
                .and_then(|(_, cols)| cols.iter().find(|x| x.starts_with(&format!("{c}|"))))
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(
            col("mailbox", "smtp_active"),
            "smtp_active|tinyint(1)|1|'1'|0"
        );
        assert_eq!(col("mailbox", "quota"), "quota|bigint(20)|1|0|0");
        assert_eq!(
            col("vacation", "activeuntil"),
            "activeuntil|datetime|1|'2038-01-18'|0"
        );
        assert_eq!(
            col("alias", "description"),
            "description|varchar(255)|1|''|0"
        );
        assert_eq!(
            col("totp_exception_address", "created"),
            "created|datetime|1|CURRENT_TIMESTAMP|0"
        );

        let idx = sqlite_indexes(&pool).await;
        for want in [
            "totp_exception_address.ip_user",
            "domain_admins.idx_domadm_user_domain_active",
            "fetchmail.idx_fetchmail_domain",
            "mailbox.postern_mailbox_domain_username_name",
            "alias.postern_alias_domain_address",
        ] {
            assert!(idx.iter().any(|i| i == want), "{want} missing from {idx:?}");
        }

        // foreign keys work: deleting a domain removes its DKIM keys and their signing rows
        exec(
            &pool,
            "INSERT INTO domain (domain, description, transport) VALUES ('example.org', '', 'virtual')",
        )
        .await;
        exec(
            &pool,
            "INSERT INTO dkim (domain_name) VALUES ('example.org')",
        )
        .await;
        exec(
            &pool,
            "INSERT INTO dkim_signing (author, dkim_id) SELECT 'example.org', id FROM dkim",
        )
        .await;
        exec(&pool, "DELETE FROM domain WHERE domain = 'example.org'").await;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dkim_signing")
            .fetch_one(&pool)
            .await
            .unwrap_or(-1);
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn sqlite_at_3_3_is_upgraded_to_the_same_schema_as_fresh() {
        let fresh_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let fresh = sqlite_pool(&fresh_dir).await;
        run(&fresh).await.unwrap_or_else(|e| panic!("{e}"));

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let old = sqlite_pool(&dir).await;
        // A 3.3 database: the 1847 file alone, with some data in it.
        exec(&old, MIGRATIONS[0].sqlite).await;
        exec(
            &old,
            "INSERT INTO domain (domain, description, transport) VALUES ('example.org', 'x', 'virtual');
             INSERT INTO mailbox (username, password, name, maildir, local_part, domain)
                 VALUES ('a@example.org', '{PLAIN}x', 'A', 'example.org/a/', 'a', 'example.org');",
        )
        .await;
        assert_eq!(current_version(&old).await.ok(), Some(1847));

        let report = run(&old).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.from, 1847);
        assert_eq!(report.to, NEWEST);
        assert_eq!(
            report.applied,
            vec![1848, 1849, 1850, 1851, 1852, 1853, 1854, 1856]
        );
        assert_eq!(sqlite_columns(&old).await, sqlite_columns(&fresh).await);
        assert_eq!(sqlite_indexes(&old).await, sqlite_indexes(&fresh).await);
        let smtp: i64 = sqlx::query_scalar("SELECT smtp_active FROM mailbox")
            .fetch_one(&old)
            .await
            .unwrap_or(-1);
        assert_eq!(smtp, 1, "existing mailboxes keep SMTP AUTH");

        // a second run is a no-op
        let again = run(&old).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again,
            MigrateReport {
                from: NEWEST,
                to: NEWEST,
                applied: vec![]
            }
        );
    }

    #[tokio::test]
    async fn sqlite_stock_3_3_before_1847_and_empty_config_are_accepted() {
        // PostfixAdmin 3.3 at 1845: SQLite schema identical to 1847.
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let pool = sqlite_pool(&dir).await;
        exec(&pool, MIGRATIONS[0].sqlite).await;
        exec(
            &pool,
            "UPDATE config SET value = '1845' WHERE name = 'version'",
        )
        .await;
        let report = run(&pool).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((report.from, report.to), (1845, NEWEST));
        assert_eq!(report.applied.first(), Some(&1847));

        // config without the version row (and PostfixAdmin's own ('version','0') row) count as empty
        for setup in [
            "CREATE TABLE config (id integer PRIMARY KEY AUTOINCREMENT NOT NULL, \
             name TEXT NOT NULL UNIQUE DEFAULT '', value TEXT NOT NULL DEFAULT '')",
            "CREATE TABLE config (id integer PRIMARY KEY AUTOINCREMENT NOT NULL, \
             name TEXT NOT NULL UNIQUE DEFAULT '', value TEXT NOT NULL DEFAULT ''); \
             INSERT INTO config (name, value) VALUES ('version', '0')",
        ] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let pool = sqlite_pool(&dir).await;
            exec(&pool, setup).await;
            let report = run(&pool).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((report.from, report.to), (0, NEWEST));
            let rows: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM config WHERE name = 'version'")
                    .fetch_one(&pool)
                    .await
                    .unwrap_or(-1);
            assert_eq!(rows, 1);
        }
    }

    #[tokio::test]
    async fn sqlite_newer_or_older_or_garbage_is_refused() {
        for (value, check) in [
            (
                "9999",
                (|e: &MigrateError| matches!(e, MigrateError::TooNew { found: 9999, .. }))
                    as fn(&MigrateError) -> bool,
            ),
            ("1500", |e| {
                matches!(e, MigrateError::TooOld { found: 1500, .. })
            }),
            ("abc", |e| matches!(e, MigrateError::BadVersion(_))),
        ] {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
            let pool = sqlite_pool(&dir).await;
            exec(&pool, MIGRATIONS[0].sqlite).await;
            let sql = format!("UPDATE config SET value = '{value}' WHERE name = 'version'");
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&pool).await {
                panic!("{e}");
            }
            match run(&pool).await {
                Err(e) => {
                    assert!(check(&e), "{value}: {e}");
                    assert!(!e.to_string().is_empty());
                }
                Ok(r) => panic!("{value}: migrated anyway: {r:?}"),
            }
            // nothing was touched
            let v: String = sqlx::query_scalar("SELECT value FROM config WHERE name = 'version'")
                .fetch_one(&pool)
                .await
                .unwrap_or_default();
            assert_eq!(v, value);
        }
    }

    /// Fresh and 1847-upgraded databases on a real server end up with the same columns.
    /// `url` names a server where this test may create and drop databases `postern_mig_*`.
    async fn server_roundtrip(engine: Engine, url: &str) {
        sqlx::any::install_default_drivers();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
        let mut layouts = Vec::new();
        // (database, pre-existing state): statements run before `run`, and the version they leave
        let first_1849 = statements(MIGRATIONS[2].sql(engine)).into_iter().take(1);
        let cases: Vec<(&str, Vec<&'static str>, i64)> = vec![
            ("postern_mig_fresh", vec![], 0),
            (
                "postern_mig_old",
                statements(MIGRATIONS[0].sql(engine)),
                1847,
            ),
            (
                // stock 3.3 before its last fixes (MySQL gets the catch-up file)
                "postern_mig_1845",
                statements(MIGRATIONS[0].sql(engine))
                    .into_iter()
                    .chain(["UPDATE config SET value = '1845' WHERE name = 'version'"])
                    .collect(),
                1845,
            ),
            (
                // 1849 half applied (possible on MySQL, whose DDL is not transactional)
                "postern_mig_half",
                statements(MIGRATIONS[0].sql(engine))
                    .into_iter()
                    .chain(statements(MIGRATIONS[1].sql(engine)))
                    .chain(first_1849)
                    .chain(["UPDATE config SET value = '1848' WHERE name = 'version'"])
                    .collect(),
                1848,
            ),
        ];
        for (db, setup, start) in cases {
            if engine == Engine::Postgres && db == "postern_mig_half" {
                continue; // PostgreSQL applies a file in one transaction: no half state exists
            }
            for sql in [
                format!("DROP DATABASE IF EXISTS {db}"),
                format!("CREATE DATABASE {db}"),
            ] {
                if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&admin).await {
                    panic!("{e}");
                }
            }
            let pool = AnyPoolOptions::new()
                .max_connections(2)
                .connect(&format!("{base}/{db}"))
                .await
                .unwrap_or_else(|e| panic!("{db}: {e}"));
            for s in setup {
                if let Err(e) = sqlx::raw_sql(s).execute(&pool).await {
                    panic!("{s}: {e}");
                }
            }
            assert_eq!(current_version(&pool).await.ok(), Some(start), "{db}");
            let report = run(&pool).await.unwrap_or_else(|e| panic!("{db}: {e}"));
            assert_eq!((report.from, report.to), (start, NEWEST), "{db}");
            let again = run(&pool).await.unwrap_or_else(|e| panic!("{e}"));
            assert!(again.applied.is_empty());
            // Postern's own indexes, created once and found again by the second run.
            let sql = match engine {
                Engine::Postgres => {
                    "SELECT CAST(indexname AS TEXT) FROM pg_indexes WHERE schemaname = current_schema() \
                     AND indexname LIKE 'postern!_%' ESCAPE '!' ORDER BY indexname"
                }
                _ => {
                    "SELECT DISTINCT index_name FROM information_schema.statistics \
                     WHERE table_schema = DATABASE() AND index_name LIKE 'postern!_%' ESCAPE '!' \
                     ORDER BY index_name"
                }
            };
            let indexes: Vec<String> = sqlx::query_scalar(sql)
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let want: &[&str] = match engine {
                Engine::Postgres => &[
                    "postern_alias_address_trgm",
                    "postern_alias_domain_address",
                    "postern_alias_goto_trgm",
                    "postern_mailbox_domain_username",
                    "postern_mailbox_name_trgm",
                    "postern_mailbox_username_trgm",
                ],
                _ => &["postern_domain_username_name"],
            };
            assert_eq!(indexes, want, "{engine} {db}");
            let schema = match engine {
                Engine::Postgres => "current_schema()",
                _ => "DATABASE()",
            };
            let sql = format!(
                "SELECT CONCAT(table_name, '.', column_name, ' ', column_type_x, ' ', is_nullable, ' ', \
                 COALESCE(column_default, 'NULL')) FROM (SELECT table_name, column_name, is_nullable, \
                 column_default, ordinal_position, {ty} AS column_type_x FROM information_schema.columns \
                 WHERE table_schema = {schema}) c ORDER BY table_name, ordinal_position",
                ty = match engine {
                    Engine::Postgres => "data_type",
                    _ => "CONCAT(column_type, ' ', COALESCE(collation_name, '-'))",
                }
            );
            let cols: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            for (table, _) in SQLITE_SCHEMA {
                assert!(
                    cols.iter().any(|c| c.starts_with(&format!("{table}."))),
                    "{engine}: table {table} missing"
                );
            }
            layouts.push(cols);
            pool.close().await;
        }
        for (i, layout) in layouts.iter().enumerate().skip(1) {
            assert_eq!(
                &layouts[0], layout,
                "{engine}: fresh and upgraded schema #{i} differ"
            );
        }
    }

    /// The peer's server: `POSTERN_TEST_PG_URL` / `POSTERN_TEST_MYSQL_URL`, or one this test
    /// binary starts (and a watchdog stops when it exits).
    #[tokio::test]
    async fn postgres_fresh_and_upgraded_match() {
        let url = super::test_peers::server_url(super::test_peers::Peer::Postgres);
        server_roundtrip(Engine::Postgres, &url).await;
    }

    /// The trigram indexes need `pg_trgm`: a database owner without superuser rights creates
    /// it (a trusted extension since PostgreSQL 13); a role that may create tables but not
    /// extensions still migrates, with the b-tree indexes only.
    #[tokio::test]
    async fn postgres_trigram_indexes_for_owner_and_without_create_rights() {
        use rand::RngCore;
        let url = super::test_peers::server_url(super::test_peers::Peer::Postgres);
        sqlx::any::install_default_drivers();
        let admin = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
        let host = base.rsplit_once('@').map_or(base, |(_, h)| h);
        let tag = rand::rng().next_u32();
        for (owner, want_trgm) in [(true, true), (false, false)] {
            let (role, db) = (
                format!("p_role_{tag}_{owner}"),
                format!("p_trgm_{tag}_{owner}"),
            );
            let mut setup = vec![
                format!("CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB"),
                format!("CREATE DATABASE {db}"),
            ];
            if owner {
                setup.push(format!("ALTER DATABASE {db} OWNER TO {role}"));
            }
            for sql in setup {
                if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                    .execute(&admin)
                    .await
                {
                    panic!("{sql}: {e}");
                }
            }
            if !owner {
                // Tables yes (PostgreSQL 15 grants nothing on `public` by default), extensions no.
                let db_admin = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&format!("{base}/{db}"))
                    .await
                    .unwrap_or_else(|e| panic!("{db}: {e}"));
                let sql = format!("GRANT CREATE ON SCHEMA public TO {role}");
                if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&db_admin).await {
                    panic!("grant: {e}");
                }
                db_admin.close().await;
            }
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect(&format!("postgres://{role}@{host}/{db}"))
                .await
                .unwrap_or_else(|e| panic!("{role}: {e}"));
            let report = run(&pool).await.unwrap_or_else(|e| panic!("{role}: {e}"));
            assert_eq!(report.to, NEWEST);
            let again = run(&pool)
                .await
                .unwrap_or_else(|e| panic!("{role}, again: {e}"));
            assert!(again.applied.is_empty());
            let indexes: Vec<String> = sqlx::query_scalar(
                "SELECT CAST(indexname AS TEXT) FROM pg_indexes \
                 WHERE indexname LIKE 'postern!_%' ESCAPE '!' ORDER BY indexname",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            let trgm = indexes.iter().filter(|i| i.ends_with("_trgm")).count();
            assert_eq!(trgm, if want_trgm { 4 } else { 0 }, "{role}: {indexes:?}");
            assert!(
                indexes.contains(&"postern_mailbox_domain_username".to_string()),
                "{role}: {indexes:?}"
            );
            pool.close().await;
            for sql in [format!("DROP DATABASE {db}"), format!("DROP ROLE {role}")] {
                if let Err(e) = sqlx::raw_sql(AssertSqlSafe(sql.clone()))
                    .execute(&admin)
                    .await
                {
                    panic!("{sql}: {e}");
                }
            }
        }
    }

    #[tokio::test]
    async fn mysql_fresh_and_upgraded_match() {
        let url = super::test_peers::server_url(super::test_peers::Peer::MariaDb);
        server_roundtrip(Engine::MySql, &url).await;
    }
}
