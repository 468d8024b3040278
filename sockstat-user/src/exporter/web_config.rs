//! `serve --web-config FILE`: TLS and basic auth in the Prometheus exporter-toolkit's web
//! configuration format (prometheus.io/docs/prometheus/latest/configuration/https/), so a
//! file written for node_exporter serves here too. Paths in it are relative to the file.
//! A key sockstat cannot honour is refused with its name, never ignored.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("--web-config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("--web-config {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    tls_server_config: Option<TlsFormat>,
    http_server_config: Option<HttpFormat>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFormat {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    // Known to exporter-toolkit, refused here with a reason (see `unsupported`).
    cert: Option<serde::de::IgnoredAny>,
    key: Option<serde::de::IgnoredAny>,
    client_ca: Option<serde::de::IgnoredAny>,
    cipher_suites: Option<serde::de::IgnoredAny>,
    curve_preferences: Option<serde::de::IgnoredAny>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFormat {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The resolved configuration: what the HTTP server does with each connection.
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    pub auth: BasicAuth,
    /// Response headers the file asks for (http_server_config.headers).
    pub headers: Vec<(String, String)>,
}

impl WebConfig {
    /// No TLS, no users: what serve does without --web-config.
    pub fn open() -> Self {
        WebConfig {
            tls: None,
            auth: BasicAuth::default(),
            headers: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir).map_err(|message| WebConfigError::Invalid {
            path: shown,
            // serde_yaml's messages run over lines; one line is the rule here.
            message: message.replace('\n', " "),
        })
    }

    fn parse(text: &str, dir: &Path) -> Result<Self, String> {
        // An empty file is an empty configuration, as in exporter-toolkit.
        let file: FileFormat = if text.trim().is_empty() {
            FileFormat::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
        };
        let tls = file.tls_server_config.map(|t| tls(t, dir)).transpose()?;
        let auth = BasicAuth::new(file.basic_auth_users.unwrap_or_default())?;
        let mut headers = Vec::new();
        if let Some(http) = file.http_server_config {
            if http.http2 == Some(true) {
                return Err("http_server_config.http2: sockstat serves HTTP/1.1 only; set it to false or leave it out".into());
            }
            for (name, value) in http.headers.unwrap_or_default() {
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !value.contains(['\r', '\n']);
                if !valid {
                    return Err(format!(
                        "http_server_config.headers: {name:?} is not a header"
                    ));
                }
                headers.push((name, value));
            }
        }
        Ok(WebConfig { tls, auth, headers })
    }
}

/// The TLS part as rustls sees it.
fn tls(t: TlsFormat, dir: &Path) -> Result<Arc<ServerConfig>, String> {
    let unsupported = [
        (
            "cert",
            t.cert.is_some(),
            "put the certificate in a file: cert_file",
        ),
        ("key", t.key.is_some(), "put the key in a file: key_file"),
        (
            "client_ca",
            t.client_ca.is_some(),
            "put the CA in a file: client_ca_file",
        ),
        (
            "cipher_suites",
            t.cipher_suites.is_some(),
            "rustls offers only modern AEAD suites; leave it out",
        ),
        (
            "curve_preferences",
            t.curve_preferences.is_some(),
            "rustls offers X25519, P-256 and P-384; leave it out",
        ),
        (
            "client_allowed_sans",
            t.client_allowed_sans.is_some(),
            "not supported; any certificate the client CA signed is accepted",
        ),
    ];
    if let Some((key, _, what)) = unsupported.iter().find(|(_, given, _)| *given) {
        return Err(format!("tls_server_config.{key}: {what}"));
    }
    // rustls always prefers its own order: true is what it does, false it cannot.
    if t.prefer_server_cipher_suites == Some(false) {
        return Err("tls_server_config.prefer_server_cipher_suites: false is not supported (rustls prefers the server's order)".into());
    }
    let (Some(cert_file), Some(key_file)) = (t.cert_file, t.key_file) else {
        return Err("tls_server_config needs cert_file and key_file".into());
    };
    // Settings are checked before any file is read, so a wrong setting is named
    // even where the files are not there yet.
    let versions = versions(t.min_version.as_deref(), t.max_version.as_deref())?;
    let client_auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    match client_auth {
        "NoClientCert" | "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {}
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(format!(
                "tls_server_config.client_auth_type {client_auth}: a certificate nobody verifies proves nothing; use RequireAndVerifyClientCert with client_ca_file"
            ));
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type {other:?}: one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ));
        }
    }
    let cert_path = dir.join(cert_file);
    let key_path = dir.join(key_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("cert_file {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert_file {}: no certificate in it",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("key_file {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match client_auth {
        "NoClientCert" => builder.with_no_client_auth(),
        _ => {
            let Some(ca_file) = t.client_ca_file else {
                return Err(format!(
                    "tls_server_config.client_auth_type {client_auth} needs client_ca_file"
                ));
            };
            let roots = client_roots(&dir.join(ca_file))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client_ca_file: {e}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file and key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_roots(path: &PathBuf) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("client_ca_file {}: {e}", path.display()))?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("client_ca_file {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "client_ca_file {}: no certificate in it",
            path.display()
        ));
    }
    Ok(roots)
}

/// min_version/max_version (TLS10 to TLS13, as exporter-toolkit spells them; the
/// default minimum is TLS12) as the versions rustls will speak.
fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let rank = |key: &str, v: &str| -> Result<u8, String> {
        match v {
            "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            "TLS10" | "TLS11" => Err(format!(
                "tls_server_config.{key} {v}: TLS 1.0 and 1.1 are not offered (use TLS12)"
            )),
            other => Err(format!(
                "tls_server_config.{key} {other:?}: one of TLS12, TLS13"
            )),
        }
    };
    let low = min.map_or(Ok(12), |v| rank("min_version", v))?;
    let high = max.map_or(Ok(13), |v| rank("max_version", v))?;
    let chosen: Vec<_> = [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
        .into_iter()
        .filter(|&(n, _)| n >= low && n <= high)
        .map(|(_, v)| v)
        .collect();
    if chosen.is_empty() {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    Ok(chosen)
}

/// basic_auth_users: user name to bcrypt hash. bcrypt is slow by design (tens of ms at cost
/// 10), so a password that verified is remembered per user and compared in constant time
/// on the next request rather than hashed again.
#[derive(Default)]
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashMap<String, Vec<u8>>>,
}

/// What a request's credentials came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    /// No users are configured, or the password was verified before.
    Accepted,
    Rejected,
    /// A known user whose password needs bcrypt: hash, then `remember` if it matched.
    Verify {
        user: String,
        password: Vec<u8>,
        hash: String,
    },
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Result<Self, String> {
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(format!(
                    "basic_auth_users: {user:?}: a user name has no ':'"
                ));
            }
            hash.parse::<bcrypt::HashParts>().map_err(|e| {
                format!("basic_auth_users.{user}: not a bcrypt hash ({e}); make one with htpasswd -nBC 10 {user}")
            })?;
        }
        Ok(BasicAuth {
            users,
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn is_enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// The request's `Authorization` header value, if any, judged.
    pub fn check(&self, authorization: Option<&str>) -> Credentials {
        if !self.is_enabled() {
            return Credentials::Accepted;
        }
        let Some((user, password)) = authorization.and_then(decode_basic) else {
            return Credentials::Rejected;
        };
        let Some(hash) = self.users.get(&user) else {
            return Credentials::Rejected;
        };
        let known = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user)
            .is_some_and(|p| constant_time_eq(p, &password));
        if known {
            return Credentials::Accepted;
        }
        Credentials::Verify {
            user,
            password,
            hash: hash.clone(),
        }
    }

    /// Runs bcrypt (call it off the event loop); remembers the password if it matched.
    pub fn verify(&self, user: &str, password: &[u8], hash: &str) -> bool {
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(user.to_string(), password.to_vec());
        }
        ok
    }
}

/// `Basic BASE64(user:password)`.
fn decode_basic(value: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine as _;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((user, raw[colon + 1..].to_vec()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bcrypt of "sockstat-secret" at cost 4 (tests need no slow hash).
    fn hash() -> String {
        bcrypt::hash("sockstat-secret", 4).unwrap()
    }

    fn parse(text: &str) -> Result<WebConfig, String> {
        WebConfig::parse(text, Path::new("/nonexistent"))
    }

    fn basic(user: &str, password: &str) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn users_are_checked_with_bcrypt_once_then_remembered() {
        let config = parse(&format!("basic_auth_users:\n  alice: {}\n", hash())).unwrap();
        let auth = &config.auth;
        assert!(auth.is_enabled());
        assert_eq!(auth.check(None), Credentials::Rejected);
        assert_eq!(auth.check(Some(&basic("bob", "x"))), Credentials::Rejected);
        assert_eq!(auth.check(Some("Bearer abc")), Credentials::Rejected);
        let Credentials::Verify {
            user,
            password,
            hash,
        } = auth.check(Some(&basic("alice", "wrong")))
        else {
            panic!("a known user is verified");
        };
        assert!(!auth.verify(&user, &password, &hash));
        let good = basic("alice", "sockstat-secret");
        let Credentials::Verify {
            user,
            password,
            hash,
        } = auth.check(Some(&good))
        else {
            panic!("a known user is verified");
        };
        assert!(auth.verify(&user, &password, &hash));
        assert_eq!(auth.check(Some(&good)), Credentials::Accepted);
        // A wrong password after a right one still goes to bcrypt, and fails there.
        assert!(matches!(
            auth.check(Some(&basic("alice", "sockstat-secreT"))),
            Credentials::Verify { .. }
        ));
    }

    #[test]
    fn no_file_content_means_open() {
        let config = parse("").unwrap();
        assert!(config.tls.is_none());
        assert_eq!(config.auth.check(None), Credentials::Accepted);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let refused = |text: &str, needle: &str| {
            let e = parse(text).err().unwrap_or_default();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        };
        refused("tls_server_confg: {}\n", "unknown field `tls_server_confg`");
        refused("basic_auth_users:\n  alice: plain\n", "not a bcrypt hash");
        refused(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites",
        );
        refused(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n",
            "TLS 1.0 and 1.1 are not offered",
        );
        refused(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
            "proves nothing",
        );
        refused(
            "tls_server_config:\n  key_file: b\n",
            "needs cert_file and key_file",
        );
        refused(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n",
            "cert_file /nonexistent/a",
        );
        refused("http_server_config:\n  http2: true\n", "HTTP/1.1 only");
        refused(
            "http_server_config:\n  headers:\n    \"Bad Header\": x\n",
            "is not a header",
        );
    }

    #[test]
    fn versions_default_to_tls12_and_up() {
        assert_eq!(versions(None, None).unwrap().len(), 2);
        assert_eq!(versions(Some("TLS13"), None).unwrap().len(), 1);
        assert!(versions(Some("TLS13"), Some("TLS12")).is_err());
    }
}
