//! `--web.config.file`: the Prometheus exporter-toolkit YAML format.
//!
//! In: a YAML file with the top-level keys `tls_server_config`,
//! `http_server_config`, `basic_auth_users` (and `rate_limit`, recognised
//! but not supported). Out: a validated [`WebConfig`] holding a ready
//! rustls server configuration, the bcrypt users and the extra response
//! headers. Everything is checked when the file is loaded, so a bad file
//! stops the daemon at start-up instead of failing the first scrape.
//!
//! Unknown keys are errors that name the key. Settings of the format that
//! this exporter does not implement (client certificates, cipher and curve
//! lists, rate limiting) are errors too: a security setting is never
//! silently ignored. Relative file names are resolved against the directory
//! of the config file, as exporter-toolkit does. Files are read once; a
//! renewed certificate needs a restart.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::HttpError;

/// A loaded and validated web configuration (see the module docs).
///
/// Cheap to clone: the parts are shared.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) basic_auth: Option<Arc<BasicAuth>>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebConfig {
    /// Parses and validates the YAML `text` of a web config file.
    ///
    /// `config_path` names the file in error messages, and relative
    /// `cert_file`/`key_file` names are resolved against its directory.
    pub fn from_yaml(text: &str, config_path: &Path) -> Result<WebConfig, HttpError> {
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|source| HttpError::WebConfigSyntax {
                path: config_path.to_path_buf(),
                source,
            })?
        };
        let ctx = Ctx { path: config_path };

        if raw.rate_limit.is_some() {
            return Err(ctx.unsupported(
                "rate_limit",
                "rate limiting is not supported yet; remove the rate_limit section",
            ));
        }
        let tls = match raw.tls_server_config {
            Some(tls) => Some(Arc::new(tls.build(&ctx)?)),
            None => None,
        };
        let headers = match raw.http_server_config {
            Some(http) => http.headers(&ctx)?,
            None => Vec::new(),
        };
        let basic_auth = match raw.basic_auth_users {
            Some(users) if !users.is_empty() => Some(Arc::new(BasicAuth::new(users, &ctx)?)),
            _ => None,
        };
        Ok(WebConfig {
            tls,
            basic_auth,
            headers,
        })
    }

    /// Whether connections are served over TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests need HTTP basic authentication.
    pub fn basic_auth_enabled(&self) -> bool {
        self.basic_auth.is_some()
    }
}

impl fmt::Debug for WebConfig {
    // Shows user names but never password hashes or key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&str> = self
            .basic_auth
            .as_ref()
            .map(|auth| auth.users.keys().map(String::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("WebConfig")
            .field("tls_enabled", &self.tls_enabled())
            .field("basic_auth_users", &users)
            .field("headers", &self.headers)
            .finish()
    }
}

/// Reads and validates a web config file (see [`WebConfig::from_yaml`]).
pub fn load_web_config(path: &Path) -> Result<WebConfig, HttpError> {
    let text = std::fs::read_to_string(path).map_err(|source| HttpError::WebConfigRead {
        path: path.to_path_buf(),
        source,
    })?;
    WebConfig::from_yaml(&text, path)
}

/// Error context: which file is being loaded.
struct Ctx<'a> {
    path: &'a Path,
}

impl Ctx<'_> {
    fn invalid(&self, message: impl Into<String>) -> HttpError {
        HttpError::WebConfigInvalid {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    fn unsupported(&self, setting: &'static str, hint: &'static str) -> HttpError {
        HttpError::WebConfigUnsupported {
            path: self.path.to_path_buf(),
            setting,
            hint,
        }
    }

    /// Resolves a file named in the config against the config's directory.
    fn resolve(&self, file: &Path) -> PathBuf {
        if file.is_absolute() {
            return file.to_path_buf();
        }
        match self.path.parent() {
            Some(dir) => dir.join(file),
            None => file.to_path_buf(),
        }
    }

    fn read(&self, key: &str, file: &Path) -> Result<Vec<u8>, HttpError> {
        let resolved = self.resolve(file);
        std::fs::read(&resolved).map_err(|e| {
            self.invalid(format!(
                "cannot read {key} {}: {e}; give a readable PEM file (relative names are \
                 resolved against the config file's directory)",
                resolved.display()
            ))
        })
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: Option<RawTlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<RawHttpServerConfig>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<serde_yaml::Value>,
}

/// `tls_server_config`, field names as in exporter-toolkit.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsServerConfig {
    #[serde(default)]
    cert: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    client_ca: Option<String>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
}

/// A TLS version name as exporter-toolkit spells it, ordered oldest first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

fn parse_tls_version(ctx: &Ctx<'_>, key: &str, value: &str) -> Result<TlsVersion, HttpError> {
    match value {
        "TLS10" => Ok(TlsVersion::Tls10),
        "TLS11" => Ok(TlsVersion::Tls11),
        "TLS12" => Ok(TlsVersion::Tls12),
        "TLS13" => Ok(TlsVersion::Tls13),
        other => Err(ctx.invalid(format!(
            "tls_server_config.{key}: unknown TLS version {other:?}; use TLS12 or TLS13"
        ))),
    }
}

fn non_empty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.trim().is_empty())
}

fn non_empty_list(list: &Option<Vec<String>>) -> bool {
    list.as_ref().is_some_and(|l| !l.is_empty())
}

impl RawTlsServerConfig {
    fn build(self, ctx: &Ctx<'_>) -> Result<rustls::ServerConfig, HttpError> {
        match self.client_auth_type.as_deref() {
            None | Some("") | Some("NoClientCert") => {}
            Some(other) => {
                return Err(ctx.invalid(format!(
                    "tls_server_config.client_auth_type {other:?} is not supported yet: client \
                     certificates cannot be checked; use NoClientCert (or remove the key) and \
                     protect the endpoint with basic_auth_users"
                )))
            }
        }
        if self.client_ca_file.is_some() || non_empty(&self.client_ca) {
            return Err(ctx.unsupported(
                "tls_server_config.client_ca_file",
                "client certificate authentication is not supported yet; remove client_ca_file \
                 and client_ca",
            ));
        }
        if non_empty_list(&self.client_allowed_sans) {
            return Err(ctx.unsupported(
                "tls_server_config.client_allowed_sans",
                "client certificate authentication is not supported yet; remove \
                 client_allowed_sans",
            ));
        }
        if non_empty_list(&self.cipher_suites) {
            return Err(ctx.unsupported(
                "tls_server_config.cipher_suites",
                "choosing cipher suites is not supported yet; remove the list to use the safe \
                 defaults (TLS 1.2 AEAD suites and TLS 1.3)",
            ));
        }
        if non_empty_list(&self.curve_preferences) {
            return Err(ctx.unsupported(
                "tls_server_config.curve_preferences",
                "choosing curves is not supported yet; remove the list to use the safe defaults",
            ));
        }

        let min = match self.min_version.as_deref() {
            None | Some("") => TlsVersion::Tls12,
            Some(v) => parse_tls_version(ctx, "min_version", v)?,
        };
        let max = match self.max_version.as_deref() {
            None | Some("") => TlsVersion::Tls13,
            Some(v) => parse_tls_version(ctx, "max_version", v)?,
        };
        if min < TlsVersion::Tls12 {
            return Err(ctx.invalid(
                "tls_server_config.min_version: TLS10 and TLS11 are not supported; use TLS12 \
                 or TLS13",
            ));
        }
        if max < min {
            return Err(ctx.invalid(
                "tls_server_config: max_version is older than min_version; raise max_version",
            ));
        }
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if min <= TlsVersion::Tls12 && max >= TlsVersion::Tls12 {
            versions.push(&rustls::version::TLS12);
        }
        if max >= TlsVersion::Tls13 {
            versions.push(&rustls::version::TLS13);
        }

        let cert_pem = match (non_empty(&self.cert), &self.cert_file) {
            (true, Some(_)) => {
                return Err(
                    ctx.invalid("tls_server_config: give either cert or cert_file, not both")
                )
            }
            (true, None) => self.cert.unwrap_or_default().into_bytes(),
            (false, Some(file)) => ctx.read("cert_file", file)?,
            (false, None) => {
                return Err(ctx.invalid(
                    "tls_server_config needs cert_file and key_file (or inline cert and key); \
                     remove the section to serve plain HTTP",
                ))
            }
        };
        let key_pem = match (non_empty(&self.key), &self.key_file) {
            (true, Some(_)) => {
                return Err(ctx.invalid("tls_server_config: give either key or key_file, not both"))
            }
            (true, None) => self.key.unwrap_or_default().into_bytes(),
            (false, Some(file)) => ctx.read("key_file", file)?,
            (false, None) => {
                return Err(ctx.invalid(
                    "tls_server_config has a certificate but no key_file (or inline key); add \
                     the private key",
                ))
            }
        };

        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ctx.invalid(format!(
                    "tls_server_config: the certificate is not valid PEM ({e}); give PEM \
                     \"BEGIN CERTIFICATE\" blocks, server certificate first"
                ))
            })?;
        if certs.is_empty() {
            return Err(ctx.invalid(
                "tls_server_config: no \"BEGIN CERTIFICATE\" block found in the certificate; \
                 give a PEM certificate chain",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            ctx.invalid(format!(
                "tls_server_config: no usable private key ({e}); give an unencrypted PEM \
                 PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key"
            ))
        })?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| ctx.invalid(format!("tls_server_config: {e}")))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                ctx.invalid(format!(
                    "tls_server_config: the certificate and key do not work together ({e}); \
                     check that key_file belongs to cert_file"
                ))
            })?;
        config.ignore_client_order = self.prefer_server_cipher_suites.unwrap_or(true);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpServerConfig {
    /// Accepted for compatibility; this server speaks HTTP/1.1 only.
    #[serde(default)]
    #[allow(dead_code)] // Reason: parsed so that valid files load; nothing to switch.
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<RawHeaders>,
}

/// The response headers exporter-toolkit lets a config set; others are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaders {
    #[serde(rename = "Content-Security-Policy", default)]
    content_security_policy: Option<String>,
    #[serde(rename = "X-Frame-Options", default)]
    x_frame_options: Option<String>,
    #[serde(rename = "X-Content-Type-Options", default)]
    x_content_type_options: Option<String>,
    #[serde(rename = "X-XSS-Protection", default)]
    x_xss_protection: Option<String>,
    #[serde(rename = "Strict-Transport-Security", default)]
    strict_transport_security: Option<String>,
}

impl RawHttpServerConfig {
    fn headers(self, ctx: &Ctx<'_>) -> Result<Vec<(HeaderName, HeaderValue)>, HttpError> {
        let Some(h) = self.headers else {
            return Ok(Vec::new());
        };
        if let Some(v) = h.x_frame_options.as_deref() {
            if !v.is_empty()
                && !v.eq_ignore_ascii_case("deny")
                && !v.eq_ignore_ascii_case("sameorigin")
            {
                return Err(ctx.invalid(format!(
                    "http_server_config.headers.X-Frame-Options {v:?} is not allowed; use deny or \
                     sameorigin"
                )));
            }
        }
        if let Some(v) = h.x_content_type_options.as_deref() {
            if !v.is_empty() && !v.eq_ignore_ascii_case("nosniff") {
                return Err(ctx.invalid(format!(
                    "http_server_config.headers.X-Content-Type-Options {v:?} is not allowed; use \
                     nosniff"
                )));
            }
        }
        let named = [
            ("content-security-policy", h.content_security_policy),
            ("x-frame-options", h.x_frame_options),
            ("x-content-type-options", h.x_content_type_options),
            ("x-xss-protection", h.x_xss_protection),
            ("strict-transport-security", h.strict_transport_security),
        ];
        let mut out = Vec::new();
        for (name, value) in named {
            // Blank means unset, as in exporter-toolkit.
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = HeaderValue::from_str(&value).map_err(|_| {
                ctx.invalid(format!(
                    "http_server_config.headers.{name}: {value:?} is not a valid header value; \
                     use visible ASCII without line breaks"
                ))
            })?;
            out.push((HeaderName::from_static(name), value));
        }
        Ok(out)
    }
}

/// Most bcrypt checks run at once; more wait, so a flood of wrong
/// passwords cannot occupy every blocking thread.
const MAX_CONCURRENT_BCRYPT: usize = 4;
/// Cache entries kept before the cache is cleared (a handful of real
/// scrapers never reach it).
const AUTH_CACHE_CAPACITY: usize = 1024;

/// `basic_auth_users`: user name → bcrypt hash, with a cache of verified
/// credentials since a bcrypt check costs tens of milliseconds.
pub(crate) struct BasicAuth {
    users: BTreeMap<String, String>,
    /// SHA-256 of (user, password) pairs that verified.
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt_slots: Semaphore,
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>, ctx: &Ctx<'_>) -> Result<BasicAuth, HttpError> {
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(ctx.invalid(format!(
                    "basic_auth_users: user name {user:?} contains ':', which basic \
                     authentication cannot carry; rename the user"
                )));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(ctx.invalid(format!(
                    "basic_auth_users: the password of {user:?} is not a bcrypt hash; generate \
                     one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                )));
            }
        }
        Ok(BasicAuth {
            users,
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: Semaphore::new(MAX_CONCURRENT_BCRYPT),
        })
    }

    /// Whether an `Authorization` header carries valid credentials.
    pub(crate) async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let key = cache_key(&user, &password);
        if self.lock_cache().contains(&key) {
            return true;
        }
        // An unknown user is still checked against a real hash, so the
        // answer takes as long as for a known user with a wrong password.
        let (known, hash) = match self.users.get(&user) {
            Some(hash) => (true, hash.clone()),
            None => match self.users.values().next() {
                Some(hash) => (false, hash.clone()),
                None => return false,
            },
        };
        let Ok(_permit) = self.bcrypt_slots.acquire().await else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if known && verified {
            let mut cache = self.lock_cache();
            if cache.len() >= AUTH_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key);
            return true;
        }
        false
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // The set holds no invariant a panic could break.
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Splits `Basic base64(user:password)`; `None` for anything else.
fn parse_basic(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    let password = decoded[colon + 1..].to_vec();
    Some((user, password))
}

fn cache_key(user: &str, password: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(user.len() as u64).to_be_bytes());
    ctx.update(user.as_bytes());
    ctx.update(password);
    let digest = ctx.finish();
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}
