//! The built-in emulator holds to the API's request checks and produces the faults it offers,
//! since demos and the job's own tests rely on both.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use velt_group_sync::emulator::{Emulator, EmulatorConfig};

async fn start(mut config: EmulatorConfig) -> Emulator {
    // Seeded: the faults and latencies drawn are the same every run.
    config.seed.get_or_insert(7);
    Emulator::start(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .unwrap()
}

fn add_body(users: &[&str]) -> Value {
    json!({"data": {"organizationId": "o", "organizationUserGroupId": "g", "userIds": users}})
}

async fn post(emu: &Emulator, version: &str, body: &Value) -> (u16, Option<String>, Value) {
    post_raw(emu, version, body.to_string(), true, "application/json").await
}

async fn post_raw(
    emu: &Emulator,
    version: &str,
    body: String,
    with_credentials: bool,
    content_type: &str,
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new()
        .post(format!(
            "{}/{version}/organizations/usergroups/users/add",
            emu.base_url()
        ))
        .header("content-type", content_type)
        .body(body);
    if with_credentials {
        req = req
            .header("x-velt-api-key", "k")
            .header("x-velt-auth-token", "t");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap();
    (status, retry_after, body)
}

#[tokio::test]
async fn adds_under_v1_and_v2_and_answers_per_user() {
    let emu = start(EmulatorConfig::default()).await;
    let (status, _, body) = post(&emu, "v1", &add_body(&["a", "b"])).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["data"]["a"]["success"], true);
    assert_eq!(body["result"]["data"]["b"]["organizationUserGroupId"], "g");
    let (status, _, _) = post(&emu, "v2", &add_body(&["c"])).await;
    assert_eq!(status, 200);
    let (status, _, _) = post(&emu, "v3", &add_body(&["d"])).await;
    assert_eq!(status, 404);
    let held: Vec<String> = emu.memberships().into_iter().map(|m| m.2).collect();
    assert_eq!(held, ["a", "b", "c"]);
    let listed: Value = reqwest::get(format!("{}/__emulator/memberships", emu.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["memberships"].as_array().unwrap().len(), 3);
    assert_eq!(listed["requests"], 3);
}

#[tokio::test]
async fn refuses_requests_the_callable_protocol_refuses() {
    let emu = start(EmulatorConfig::default()).await;
    let extra_key = json!({"data": add_body(&["a"])["data"], "extra": 1});
    let cases = [
        (post(&emu, "v1", &extra_key).await, 400, "INVALID_ARGUMENT"),
        (
            post(
                &emu,
                "v1",
                &json!({"data": {"organizationId": "o", "userIds": ["a"]}}),
            )
            .await,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            post(&emu, "v1", &add_body(&[])).await,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            post_raw(
                &emu,
                "v1",
                add_body(&["a"]).to_string(),
                false,
                "application/json",
            )
            .await,
            401,
            "UNAUTHENTICATED",
        ),
        (
            post_raw(&emu, "v1", add_body(&["a"]).to_string(), true, "text/plain").await,
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (i, ((status, _, body), want_status, want_error)) in cases.into_iter().enumerate() {
        assert_eq!(status, want_status, "case {i}: {body}");
        assert_eq!(body["error"]["status"], want_error, "case {i}");
    }
    assert!(emu.memberships().is_empty());
}

#[tokio::test]
async fn required_credentials_must_match() {
    let emu = start(EmulatorConfig {
        credentials: Some(("right-key".into(), "right-token".into())),
        ..EmulatorConfig::default()
    })
    .await;
    let (status, _, body) = post(&emu, "v1", &add_body(&["a"])).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn caps_user_ids_per_request() {
    let emu = start(EmulatorConfig {
        max_user_ids: Some(2),
        ..EmulatorConfig::default()
    })
    .await;
    assert_eq!(post(&emu, "v1", &add_body(&["a", "b"])).await.0, 200);
    let (status, _, body) = post(&emu, "v1", &add_body(&["a", "b", "c"])).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "userIds must have at most 2 items"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let emu = start(EmulatorConfig {
        rate_limit: Some(2.0),
        ..EmulatorConfig::default()
    })
    .await;
    let mut codes = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let (status, ra, body) = post(&emu, "v1", &add_body(&["a"])).await;
        if status == 429 {
            assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
            retry_after = ra;
        }
        codes.push(status);
    }
    assert_eq!(codes, [200, 200, 429, 429]);
    assert_eq!(retry_after.as_deref(), Some("1"));
}

#[tokio::test]
async fn faults_latency_and_unavailability() {
    let emu = start(EmulatorConfig {
        unavailable_fraction: 1.0,
        latency: (Duration::from_millis(50), Duration::from_millis(60)),
        ..EmulatorConfig::default()
    })
    .await;
    let started = Instant::now();
    let (status, _, body) = post(&emu, "v1", &add_body(&["a"])).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(status, 503);
    assert_eq!(body["error"]["status"], "UNAVAILABLE");
    assert!(emu.memberships().is_empty());
}

/// The standalone `emulator` command: `--require-credentials` takes the key and token from
/// the environment and refuses requests that carry others; `--window-limit` gives a
/// per-minute quota.
#[tokio::test]
async fn the_emulator_command_serves_with_required_credentials() {
    use std::io::BufRead;
    // A free port, taken and let go (the command needs a number).
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_velt-group-sync"))
        .args([
            "emulator",
            "--port",
            &port.to_string(),
            "--require-credentials",
        ])
        .args(["--window-limit", "2/1m", "--no-retry-after"])
        .env("VELT_API_KEY", "the-key")
        .env("VELT_AUTH_TOKEN", "the-token")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.contains(&format!("listening on http://127.0.0.1:{port}")),
        "{first}"
    );
    let url = format!("http://127.0.0.1:{port}/v1/organizations/usergroups/users/add");
    let send = |key: &'static str| {
        reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("x-velt-api-key", key)
            .header("x-velt-auth-token", "the-token")
            .body(add_body(&["a"]).to_string())
            .send()
    };
    let wrong = send("other-key").await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(send("the-key").await.unwrap().status().as_u16(), 200);
    let throttled = send("the-key").await.unwrap();
    assert_eq!(
        throttled.status().as_u16(),
        429,
        "two a minute, and the 401 counted"
    );
    assert!(throttled.headers().get("retry-after").is_none());
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Rate limit exceeded. Please try again after 1 minute."
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// POSTs `data` to `/v2/{path}` and returns the status and the answer.
async fn call(emu: &Emulator, path: &str, data: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v2/{path}", emu.base_url()))
        .header("content-type", "application/json")
        .header("x-velt-api-key", "k")
        .header("x-velt-auth-token", "t")
        .body(json!({ "data": data }).to_string())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The organization-user calls a provisioning run needs: add, update, delete, list by
/// organization, and `--require-org-users` making the difference visible in group adds.
#[tokio::test]
async fn organization_users_are_added_updated_listed_and_removed() {
    let emu = start(EmulatorConfig {
        require_org_users: true,
        ..EmulatorConfig::default()
    })
    .await;
    // Not a user of the organization yet: the group add says so for that user.
    let (status, body) = call(
        &emu,
        "organizations/usergroups/users/add",
        json!({"organizationId": "o", "organizationUserGroupId": "g", "userIds": ["ada"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["data"]["ada"]["success"], false);
    assert_eq!(
        body["result"]["data"]["ada"]["message"],
        "User is not part of the organization."
    );

    let users = json!([{"userId": "ada", "name": "Ada Lovelace", "email": "ada@acme.example",
                        "accessRole": "editor"}]);
    let (status, body) = call(
        &emu,
        "users/add",
        json!({"organizationId": "o", "users": users}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["data"]["ada"]["success"], true);
    let (_, body) = call(
        &emu,
        "organizations/usergroups/users/add",
        json!({"organizationId": "o", "organizationUserGroupId": "g", "userIds": ["ada"]}),
    )
    .await;
    assert_eq!(body["result"]["data"]["ada"]["success"], true, "a user now");

    let renamed = json!([{"userId": "ada", "name": "Ada King", "email": "ada@acme.example"},
                         {"userId": "bob", "name": "Bob", "email": "bob@acme.example"}]);
    let (_, body) = call(
        &emu,
        "users/update",
        json!({"organizationId": "o", "users": renamed}),
    )
    .await;
    assert_eq!(body["result"]["data"]["ada"]["success"], true);
    assert_eq!(body["result"]["data"]["bob"]["success"], false);
    assert_eq!(
        body["result"]["data"]["bob"]["message"],
        "User does not exist."
    );
    let (_, body) = call(&emu, "users/get", json!({"organizationId": "o"})).await;
    assert_eq!(
        body["result"]["data"],
        json!([{"userId": "ada", "name": "Ada King", "email": "ada@acme.example"}])
    );

    let (status, _) = call(
        &emu,
        "users/add",
        json!({"organizationId": "o", "users": [{"userId": "x", "name": "X", "email": "not-an-address"}]}),
    )
    .await;
    assert_eq!(status, 400, "an e-mail that is no address is refused");

    let (_, body) = call(
        &emu,
        "users/delete",
        json!({"organizationId": "o", "userIds": ["ada", "zed"]}),
    )
    .await;
    assert_eq!(body["result"]["data"]["ada"]["success"], true);
    assert_eq!(body["result"]["data"]["zed"]["success"], false);
    assert!(emu.org_users("o").is_empty());
    assert!(
        emu.memberships().is_empty(),
        "removed from the organization, out of its groups"
    );
}
