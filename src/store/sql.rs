//! The store's statements, the same text for SQLite and PostgreSQL (positional `$n`).

pub const VERSION: &str = "SELECT version FROM keyway_meta WHERE id = 1";
pub const VERSION_AT: &str = "SELECT version, changed_at FROM keyway_meta WHERE id = 1";
pub const BUMP: &str = "UPDATE keyway_meta SET version = version + 1, changed_at = $1 \
     WHERE id = 1 RETURNING version";
pub const ROWS: &str = "SELECT kind, id, slug, workspace, body, sealed, created_at, updated_at, \
     version FROM keyway_objects ORDER BY kind, slug";
pub const DELETE: &str = "DELETE FROM keyway_objects WHERE kind = $1 AND id = $2";
pub const INSERT: &str = "INSERT INTO keyway_objects \
     (kind, id, slug, workspace, body, sealed, created_at, updated_at, version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub const AUDIT: &str = "INSERT INTO keyway_audit \
     (at, actor, action, kind, slug, workspace, before, after) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub const AUDIT_COUNT: &str = "SELECT COUNT(*) FROM keyway_audit";
pub const AUDIT_PAGE: &str = "SELECT seq, at, actor, action, kind, slug, workspace, before, after \
     FROM keyway_audit ORDER BY seq DESC LIMIT $1 OFFSET $2";
pub const AUDIT_COUNT_WS: &str = "SELECT COUNT(*) FROM keyway_audit WHERE workspace = $1";
pub const AUDIT_PAGE_WS: &str = "SELECT seq, at, actor, action, kind, slug, workspace, before, \
     after FROM keyway_audit WHERE workspace = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3";
