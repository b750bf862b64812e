//! The organization-user calls: `/users/add`, `/users/update`, `/users/delete`, each answered
//! per user, kept in `Shared::org_users`.

use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::calls::{gate, invalid, success};
use super::{Call, OrgUser, Shared, lock};

/// `/users/add` (creates the organization if need be; a user already there is left as is),
/// `/users/update` and `/users/delete` (a user who is not there is `success: false` "User
/// does not exist."), each answered per user.
pub(super) async fn change_org_users(
    shared: &Shared,
    call: Call,
    version: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let passed = match gate(shared, call, version, headers, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let data = &passed.data;
    let Some(Value::String(org)) = data
        .get("organizationId")
        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    else {
        return invalid("organizationId is required and must be a non-empty string");
    };
    if call == Call::DeleteOrgUsers {
        return match delete(shared, org, data) {
            Ok(entries) => success(
                shared,
                &passed,
                json!({"status": "success", "message": "Users deleted.", "data": entries}),
            ),
            Err(r) => *r,
        };
    }
    let parsed = match parse_users(shared, data) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut entries = serde_json::Map::new();
    let mut all = lock(&shared.org_users);
    let users = all.entry(org.clone()).or_default();
    for (id, user) in parsed {
        let answer = match (call, users.get_mut(&id)) {
            (Call::AddOrgUsers, None) => {
                users.insert(id.clone(), user);
                json!({"success": true, "id": id, "message": "User added."})
            }
            (Call::AddOrgUsers, Some(_)) => {
                json!({"success": true, "id": id, "message": "User already exists."})
            }
            (_, Some(known)) => {
                *known = user;
                json!({"success": true, "id": id, "message": "User updated."})
            }
            (_, None) => json!({"success": false, "message": "User does not exist."}),
        };
        entries.insert(id, answer);
    }
    drop(all);
    success(
        shared,
        &passed,
        json!({"status": "success", "message": "Users processed.", "data": entries}),
    )
}

/// `/users/delete`: removes the users from the organization and from its groups.
fn delete(
    shared: &Shared,
    org: &str,
    data: &serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    let Some(Value::Array(ids)) = data.get("userIds") else {
        return Err(Box::new(invalid(
            "userIds is required and must be an array",
        )));
    };
    let mut entries = serde_json::Map::new();
    let mut all = lock(&shared.org_users);
    let users = all.entry(org.to_string()).or_default();
    for id in ids {
        let Some(id) = id.as_str().filter(|s| !s.is_empty()) else {
            return Err(Box::new(invalid("every userId must be a non-empty string")));
        };
        let gone = users.remove(id).is_some();
        entries.insert(
            id.to_string(),
            if gone {
                json!({"success": true, "id": id, "message": "User deleted."})
            } else {
                json!({"success": false, "message": "User does not exist."})
            },
        );
    }
    drop(all);
    // A user removed from the organization leaves its groups too.
    for ((o, _), members) in shared.groups().iter_mut() {
        if o == org {
            members.retain(|m| !entries.get(m).is_some_and(|e| e["success"] == true));
        }
    }
    Ok(entries)
}

/// The `users` of an add or update: each with a user ID, a name, an e-mail address and at
/// most a valid access role.
fn parse_users(
    shared: &Shared,
    data: &serde_json::Map<String, Value>,
) -> Result<Vec<(String, OrgUser)>, Box<Response>> {
    let Some(Value::Array(list)) = data.get("users") else {
        return Err(Box::new(invalid("users is required and must be an array")));
    };
    let mut parsed = Vec::new();
    for u in list {
        let field = |k: &str| u.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(id), Some(name), Some(email)) = (field("userId"), field("name"), field("email"))
        else {
            return Err(Box::new(invalid(
                "every user needs userId, name and email (strings)",
            )));
        };
        if let Some(marker) = &shared.config.invalid_user_marker
            && id.contains(marker.as_str())
        {
            return Err(Box::new(invalid(&format!("Invalid userId: {id}"))));
        }
        if id.is_empty() || !email.contains('@') {
            return Err(Box::new(invalid(&format!(
                "invalid user {id}: userId must be non-empty and email an address"
            ))));
        }
        let role = field("accessRole");
        if role
            .as_deref()
            .is_some_and(|r| r != "viewer" && r != "editor")
        {
            return Err(Box::new(invalid("accessRole must be viewer or editor")));
        }
        parsed.push((
            id,
            OrgUser {
                name,
                email,
                access_role: role,
            },
        ));
    }
    Ok(parsed)
}
