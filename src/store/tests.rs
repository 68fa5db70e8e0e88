//! The store against SQLite (PostgreSQL: the end-to-end tests with a real server): migrations,
//! sealed fields, serialized writes, refusals that write nothing, the audit log.

use super::*;

async fn sqlite() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("keyway-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = StoreSettings {
        url: format!("sqlite://{}?mode=rwc", dir.join("keyway.db").display()),
        key: KeySource::Generated(dir.join("store.key")),
        poll: Duration::from_millis(100),
    };
    (Store::open(&settings).await.unwrap(), dir)
}

fn row(slug: &str, secret: &str) -> Row {
    Row {
        kind: "virtual_key".into(),
        id: format!("id-{slug}"),
        slug: slug.into(),
        workspace: Some("team-a".into()),
        body: serde_json::json!({"provider": "openai"}),
        secrets: serde_json::json!({"key": secret}),
        created_at: now(),
        updated_at: now(),
        version: 0,
    }
}

fn audit(slug: &str) -> Audit {
    Audit {
        actor: "test".into(),
        action: "create".into(),
        kind: "virtual_key".into(),
        slug: slug.into(),
        workspace: Some("team-a".into()),
        before: None,
        after: Some(serde_json::json!({"slug": slug})),
    }
}

#[tokio::test]
async fn writes_are_versioned_sealed_and_audited() {
    let (s, dir) = sqlite().await;
    assert_eq!(s.version().await.unwrap(), 0);
    let r = s
        .write(|rows, v| {
            assert!(rows.is_empty());
            assert_eq!(v, 1);
            Ok::<_, ()>((
                vec![Mutation::Put(row("vk1", "sk-sealed-secret"))],
                audit("vk1"),
                7,
            ))
        })
        .await
        .unwrap();
    assert_eq!(r, Ok((1, 7)));
    let snap = s.snapshot().await.unwrap();
    assert_eq!(snap.version, 1);
    assert_eq!(snap.rows.len(), 1);
    assert_eq!(snap.rows[0].secrets["key"], "sk-sealed-secret");
    assert_eq!(snap.rows[0].version, 1);
    // The database file never holds the secret in clear.
    let db = std::fs::read(dir.join("keyway.db")).unwrap();
    let wal = std::fs::read(dir.join("keyway.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(16).any(|w| w == b"sk-sealed-secret"));
    }
    // A refusal writes nothing, not even the version.
    let refused = s
        .write(|_, _| Err::<(Vec<Mutation>, Audit, ()), _>("duplicate slug"))
        .await
        .unwrap();
    assert_eq!(refused, Err("duplicate slug"));
    assert_eq!(s.version().await.unwrap(), 1);
    let (n, log) = s.audit(Some("team-a"), 0, 10).await.unwrap();
    assert_eq!((n, log.len()), (1, 1));
    assert_eq!(log[0].slug, "vk1");
    assert_eq!(s.audit(Some("team-b"), 0, 10).await.unwrap().0, 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn concurrent_writers_are_serialized() {
    let (s, dir) = sqlite().await;
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.write(|rows, _| {
                    // Everyone wants the same slug: whoever sees it taken refuses.
                    if rows.iter().any(|r| r.slug == "one") {
                        return Err("taken");
                    }
                    let mut r = row("one", "k");
                    r.id = format!("id-{i}");
                    Ok((vec![Mutation::Put(r)], audit("one"), ()))
                })
                .await
                .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    assert_eq!(s.snapshot().await.unwrap().rows.len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}
