//! The API key and workspace auth token: from the environment or from files (at most 64 KB,
//! warned about when others can read them), never printed, and never sent in clear text to
//! another host.

use std::fmt;
use std::path::Path;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::error::Error;

pub const API_KEY_ENV: &str = "VELT_API_KEY";
pub const AUTH_TOKEN_ENV: &str = "VELT_AUTH_TOKEN";

/// The API key and workspace auth token. `Debug` shows neither.
#[derive(Clone)]
pub struct Credentials {
    api_key: String,
    auth_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { <redacted> }")
    }
}

impl Credentials {
    pub fn new(api_key: impl Into<String>, auth_token: impl Into<String>) -> Credentials {
        Credentials {
            api_key: api_key.into(),
            auth_token: auth_token.into(),
        }
    }

    /// From the files if given, otherwise from `VELT_API_KEY` / `VELT_AUTH_TOKEN`.
    pub fn resolve(
        api_key_file: Option<&Path>,
        auth_token_file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, Error> {
        let api_key = secret(api_key_file, API_KEY_ENV, "--api-key-file", &env)?;
        let auth_token = secret(auth_token_file, AUTH_TOKEN_ENV, "--auth-token-file", &env)?;
        Ok(Credentials {
            api_key,
            auth_token,
        })
    }

    pub(crate) fn headers(&self) -> Result<HeaderMap, Error> {
        let mut headers = HeaderMap::new();
        for (name, value, origin) in [
            ("x-velt-api-key", &self.api_key, "the API key"),
            ("x-velt-auth-token", &self.auth_token, "the auth token"),
        ] {
            let mut v = HeaderValue::from_str(value).map_err(|_| {
                Error::Config(format!(
                    "{origin} contains characters that cannot be sent in a header; check its value"
                ))
            })?;
            v.set_sensitive(true);
            headers.insert(name, v);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(headers)
    }
}

fn secret(
    file: Option<&Path>,
    var: &str,
    flag: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, Error> {
    let value = match file {
        Some(path) => read_secret_file(path, flag)?,
        None => env(var).unwrap_or_default(),
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        let origin = match file {
            Some(p) => format!("{} is empty", p.display()),
            None => format!("{var} is not set"),
        };
        return Err(Error::Config(format!(
            "{origin}; set {var} or pass {flag} (or use --emulator / --dry-run to send nothing real)"
        )));
    }
    Ok(value)
}

/// The most a key or token file may hold: a secret is short, and `/dev/zero` is not one.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret from a file: at most 64 KB, UTF-8; a file that other users can read is warned
/// about, as ssh does for private keys.
fn read_secret_file(path: &Path, flag: &str) -> Result<String, Error> {
    use std::io::Read;
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    #[cfg(unix)]
    if let Ok(meta) = file.metadata() {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if meta.is_file() && mode & 0o077 != 0 {
            tracing::warn!(
                event = "secret_file_readable",
                path = %path.display(),
                mode = %format!("{:o}", mode & 0o777),
                message = "other users can read this secret file; chmod 600 it"
            );
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(Error::Config(format!(
            "{}: larger than {} KB, so not a key or token; check {flag}",
            path.display(),
            MAX_SECRET_FILE / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::Config(format!(
            "{}: not UTF-8 text, so not a key or token; check {flag}",
            path.display()
        ))
    })
}

/// Refuses a plain-http base URL on a host other than this machine's loopback: the API key
/// and token would cross the network in clear text.
pub fn check_transport_security(base_url: &str, allow_insecure_http: bool) -> Result<(), Error> {
    let Ok(url) = reqwest::Url::parse(base_url.trim_end_matches('/')) else {
        return Ok(()); // `VeltClient::new` says what is wrong with it.
    };
    if url.scheme() != "http" || allow_insecure_http || is_loopback(&url) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "--base-url `{}` is plain http to another host: the API key and token would travel \
         unencrypted; use https://, or pass --allow-insecure-http if the network is trusted",
        crate::text::clip(&redact_url(base_url))
    )))
}

/// Refuses a `--metrics-push` URL that carries a user and password (sent as Basic auth) over
/// plain http to a host other than this machine's loopback, as `--base-url` would be refused.
/// A gateway without credentials may be plain http: metrics are no secret.
pub fn check_push_security(push: &str, allow_insecure_http: bool) -> Result<(), Error> {
    let Ok(url) = reqwest::Url::parse(push) else {
        return Err(Error::Config(format!(
            "--metrics-push `{}` is not a URL; give http(s)://HOST:PORT",
            crate::text::clip(&redact_url(push))
        )));
    };
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    if url.scheme() != "http" || !has_credentials || allow_insecure_http || is_loopback(&url) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "--metrics-push `{}` sends its user and password over plain http to another host; use \
         https://, or pass --allow-insecure-http if the network is trusted",
        redact_url(push)
    )))
}

/// A URL as it may be shown: its user and password (`http://user:pass@host`) replaced by
/// `***`. Text that is not a URL is shown with anything before an `@` in its authority hidden.
pub fn redact_url(text: &str) -> String {
    match reqwest::Url::parse(text) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("***");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(_) => text.to_string(),
        Err(_) => match text.split_once("://") {
            Some((scheme, rest)) => {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                match rest[..authority_end].rfind('@') {
                    Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                    None => text.to_string(),
                }
            }
            None => text.to_string(),
        },
    }
}

/// Whether a URL's host is this machine's loopback.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print() {
        let c = Credentials::new("KEY-SECRET-1", "TOKEN-SECRET-2");
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let err = Credentials::resolve(None, None, |_| None).unwrap_err();
        assert!(err.to_string().contains("VELT_API_KEY is not set"), "{err}");
        let err = Credentials::resolve(None, None, |v| (v == API_KEY_ENV).then(|| "k".to_string()))
            .unwrap_err();
        assert!(
            err.to_string().contains("VELT_AUTH_TOKEN is not set"),
            "{err}"
        );
    }
}
