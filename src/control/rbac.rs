//! Who may use the admin API (seed 003): a caller whose role is `owner` or `admin`,
//! authenticated with `x-portkey-api-key` (a gateway key) or a JWT, whatever the proxy's
//! posture. An organisation owner or admin (a key without a workspace) sees and changes every
//! object; a workspace admin only its workspace's; members and callers without an admin role
//! get 403. Only an owner makes owner keys.

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

use super::http::ApiError;
use crate::auth::gate::Authenticator;
use crate::auth::Role;

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The key's name or the token's subject, for the audit log.
    pub name: String,
    pub role: Role,
    /// `None`: the organisation.
    pub workspace: Option<Arc<str>>,
}

impl Actor {
    /// May act on an object owned by `workspace` (`None`: an organisation object)?
    pub fn may_touch(&self, workspace: Option<&str>) -> bool {
        match (&self.workspace, workspace) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => **mine == *theirs,
            (Some(_), None) => false,
        }
    }

    pub fn check(&self, workspace: Option<&str>) -> Result<(), ApiError> {
        match self.may_touch(workspace) {
            true => Ok(()),
            false => Err(ApiError::new(
                403,
                "forbidden",
                match workspace {
                    Some(w) => format!("this key may not manage workspace {w}'s objects"),
                    None => {
                        "only organisation owners and admins manage organisation objects".to_owned()
                    }
                },
            )),
        }
    }
}

/// The admin behind `headers`: 401 without a valid credential, 403 below admin.
pub async fn actor(auth: &Authenticator, headers: &HeaderMap) -> Result<Actor, ApiError> {
    let caller = auth
        .identify(headers, SystemTime::now())
        .await
        .map_err(|r| {
            let status = match r.error.outcome_kind() {
                crate::vocab::Outcome::Forbidden => 403,
                _ => 401,
            };
            ApiError::new(status, "unauthorized", r.error.to_string())
        })?;
    match caller.role {
        Role::Owner | Role::Admin => Ok(Actor {
            name: caller
                .subject
                .as_deref()
                .map_or_else(|| "unknown".to_owned(), str::to_owned),
            role: caller.role,
            workspace: caller.workspace,
        }),
        Role::Member => Err(ApiError::new(
            403,
            "forbidden",
            "the admin API needs the owner or admin role",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_admins_stay_in_their_workspace() {
        let org = Actor {
            name: "o".into(),
            role: Role::Admin,
            workspace: None,
        };
        let ws = Actor {
            workspace: Some("team-a".into()),
            ..org.clone()
        };
        assert!(org.may_touch(None) && org.may_touch(Some("team-b")));
        assert!(ws.may_touch(Some("team-a")));
        assert!(!ws.may_touch(Some("team-b")));
        assert!(!ws.may_touch(None));
        assert_eq!(ws.check(Some("team-b")).unwrap_err().status, 403);
    }
}
