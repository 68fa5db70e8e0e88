//! The control plane's store: the objects created over the admin API (workspaces, API keys,
//! secret references, integrations, virtual keys, configs) and the audit log, in SQLite (one
//! file, the default) or PostgreSQL (shared by a fleet). One schema with versioned migrations,
//! applied at start-up; the same queries on both engines (sqlx's `Any` driver).
//!
//! Every write is one transaction that first bumps the store's version (which also serializes
//! writers: SQLite's write lock, PostgreSQL's row lock), then reads the rows, lets the caller
//! decide (validation included) and writes the changes and the audit entry; PostgreSQL also
//! `NOTIFY`s `keyway_changes`. Readers poll the version (and, on PostgreSQL, listen), and load
//! the rows when it moves. Sensitive fields are sealed (`crypto.rs`).

pub mod crypto;
mod sql;

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row as _};

pub use crypto::{KeySource, Sealer};

/// What the store is. `Debug` hides the URL's password.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `sqlite://PATH` or `postgres://…`.
    pub url: String,
    pub key: KeySource,
    /// How often the version is read (the backstop for a lost notification).
    pub poll: Duration,
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &shown_url(&self.url))
            .field("key", &self.key)
            .field("poll", &self.poll)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn of(url: &str) -> Option<Engine> {
        if url.starts_with("sqlite:") {
            Some(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Engine::Postgres)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or answered with an error: worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's key is missing or wrong.
    #[error("store key: {0}")]
    Key(String),
    /// Stored data that keyway cannot read (a newer schema, a broken document).
    #[error("store data: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // sqlx's messages name the statement and the server's error, never bound values.
        StoreError::Unavailable(e.to_string())
    }
}

/// One stored object, its sealed fields opened.
#[derive(Clone, PartialEq)]
pub struct Row {
    pub kind: String,
    pub id: String,
    pub slug: String,
    /// The workspace slug that owns it; `None`: the organisation.
    pub workspace: Option<String>,
    pub body: Value,
    /// The sensitive fields (`Null` when none).
    pub secrets: Value,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("workspace", &self.workspace)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Everything stored, at one version.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: i64,
    /// When that version was committed (the writer's clock, RFC 3339).
    pub changed_at: String,
    pub rows: Vec<Row>,
}

/// A write's effect on the rows.
#[derive(Debug, Clone)]
pub enum Mutation {
    Put(Row),
    Delete { kind: String, id: String },
}

/// One audit entry, masked by the caller.
#[derive(Debug, Clone)]
pub struct Audit {
    pub actor: String,
    pub action: String,
    pub kind: String,
    pub slug: String,
    pub workspace: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One page of the audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub kind: String,
    pub slug: String,
    pub workspace: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

pub struct Store {
    pool: AnyPool,
    engine: Engine,
    sealer: Sealer,
    url: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.engine.as_str())
    }
}

/// A URL with its password hidden, for logs.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("*****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Store {
    /// Connects and applies the migrations. The key is checked against the stored data on the
    /// first read, not here.
    pub async fn open(settings: &StoreSettings) -> Result<Store, StoreError> {
        let engine = Engine::of(&settings.url).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "store url {} is neither sqlite: nor postgres://",
                shown_url(&settings.url)
            ))
        })?;
        let sealer = Sealer::load(&settings.key)?;
        if engine == Engine::Sqlite {
            make_sqlite_dir(&settings.url)?;
        }
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // Writers from several processes wait for each other instead of failing.
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&settings.url)
            .await?;
        let migrator = match engine {
            Engine::Sqlite => sqlx::migrate!("src/store/migrations/sqlite"),
            Engine::Postgres => sqlx::migrate!("src/store/migrations/postgres"),
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrations: {e}")))?;
        Ok(Store {
            pool,
            engine,
            sealer,
            url: settings.url.clone(),
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The URL, for `PgListener` (PostgreSQL's notifications need their own connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn version(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar::<_, i64>(sql::VERSION)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Every row, at one version (read in one transaction).
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut tx = self.pool.begin().await?;
        let meta = sqlx::query(sql::VERSION_AT).fetch_one(&mut *tx).await?;
        let version: i64 = meta.try_get("version")?;
        let changed_at: String = meta.try_get("changed_at")?;
        let rows = self.rows(&mut tx).await?;
        tx.commit().await?;
        Ok(Snapshot {
            version,
            changed_at,
            rows,
        })
    }

    async fn rows(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<Vec<Row>, StoreError> {
        let raw = sqlx::query(sql::ROWS).fetch_all(&mut **tx).await?;
        raw.iter().map(|r| self.row(r)).collect()
    }

    fn row(&self, r: &AnyRow) -> Result<Row, StoreError> {
        let kind: String = r.try_get("kind")?;
        let id: String = r.try_get("id")?;
        let body: String = r.try_get("body")?;
        let sealed: Option<Vec<u8>> = r.try_get("sealed")?;
        let body = serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("{kind} {id}: body: {e}")))?;
        let secrets = match sealed {
            None => Value::Null,
            Some(blob) => {
                let plain = self.sealer.open(&blob, aad(&kind, &id).as_bytes())?;
                serde_json::from_slice(&plain)
                    .map_err(|e| StoreError::Corrupt(format!("{kind} {id}: sealed: {e}")))?
            }
        };
        Ok(Row {
            slug: r.try_get("slug")?,
            workspace: r.try_get("workspace")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            version: r.try_get("version")?,
            kind,
            id,
            body,
            secrets,
        })
    }

    /// One write: `decide` sees every row as of this transaction (writers are serialized) and
    /// the version this write will have, and answers with the mutations and the audit entry,
    /// or refuses (nothing is written). Returns the new version and `decide`'s value.
    pub async fn write<T, E>(
        &self,
        decide: impl FnOnce(&[Row], i64) -> Result<(Vec<Mutation>, Audit, T), E>,
    ) -> Result<Result<(i64, T), E>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let version = sqlx::query_scalar::<_, i64>(sql::BUMP)
            .bind(now_millis())
            .fetch_one(&mut *tx)
            .await?;
        let rows = self.rows(&mut tx).await?;
        let (mutations, audit, value) = match decide(&rows, version) {
            Ok(v) => v,
            Err(e) => {
                tx.rollback().await?;
                return Ok(Err(e));
            }
        };
        for m in &mutations {
            self.apply(&mut tx, m, version).await?;
        }
        let (before, after) = (json_text(&audit.before), json_text(&audit.after));
        sqlx::query(sql::AUDIT)
            .bind(now())
            .bind(audit.actor)
            .bind(audit.action)
            .bind(audit.kind)
            .bind(audit.slug)
            .bind(audit.workspace)
            .bind(before)
            .bind(after)
            .execute(&mut *tx)
            .await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_notify('keyway_changes', $1)")
                .bind(version.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Ok((version, value)))
    }

    async fn apply(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        m: &Mutation,
        version: i64,
    ) -> Result<(), StoreError> {
        match m {
            Mutation::Delete { kind, id } => {
                sqlx::query(sql::DELETE)
                    .bind(kind.clone())
                    .bind(id.clone())
                    .execute(&mut **tx)
                    .await?;
            }
            Mutation::Put(r) => {
                let sealed = match &r.secrets {
                    Value::Null => None,
                    s => Some(
                        self.sealer
                            .seal(s.to_string().as_bytes(), aad(&r.kind, &r.id).as_bytes())?,
                    ),
                };
                sqlx::query(sql::DELETE)
                    .bind(r.kind.clone())
                    .bind(r.id.clone())
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(sql::INSERT)
                    .bind(r.kind.clone())
                    .bind(r.id.clone())
                    .bind(r.slug.clone())
                    .bind(r.workspace.clone())
                    .bind(r.body.to_string())
                    .bind(sealed)
                    .bind(r.created_at.clone())
                    .bind(r.updated_at.clone())
                    .bind(version)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    /// Audit entries, newest first; `workspace` limits them to one workspace's objects.
    pub async fn audit(
        &self,
        workspace: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(i64, Vec<AuditEntry>), StoreError> {
        let (count, page) = match workspace {
            None => (
                sqlx::query_scalar::<_, i64>(sql::AUDIT_COUNT)
                    .fetch_one(&self.pool)
                    .await?,
                sqlx::query(sql::AUDIT_PAGE)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&self.pool)
                    .await?,
            ),
            Some(w) => (
                sqlx::query_scalar::<_, i64>(sql::AUDIT_COUNT_WS)
                    .bind(w.to_owned())
                    .fetch_one(&self.pool)
                    .await?,
                sqlx::query(sql::AUDIT_PAGE_WS)
                    .bind(w.to_owned())
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&self.pool)
                    .await?,
            ),
        };
        let parse = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
        let entries = page
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    kind: r.try_get("kind")?,
                    slug: r.try_get("slug")?,
                    workspace: r.try_get("workspace")?,
                    before: parse(r.try_get("before")?),
                    after: parse(r.try_get("after")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok((count, entries))
    }
}

/// Creates the directory of a SQLite URL's file (owner-only), so a fresh start needs nothing.
fn make_sqlite_dir(url: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    let dir = std::path::Path::new(path).parent();
    match dir.filter(|d| !d.as_os_str().is_empty() && path != ":memory:") {
        None => Ok(()),
        Some(d) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", d.display()))),
    }
}

/// The associated data of a row's sealed fields.
fn aad(kind: &str, id: &str) -> String {
    format!("keyway/{kind}/{id}")
}

fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

/// Now, RFC 3339 (UTC, milliseconds).
pub fn now_millis() -> String {
    let t = time::OffsetDateTime::now_utc();
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Now, RFC 3339 (UTC, seconds).
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
