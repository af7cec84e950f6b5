//! The one configuration document, read once at start-up.
//!
//! Sources, later ones winning: the embedded defaults ([`Config::default`]), a TOML file
//! (`--config` or `TOOLGATE_CONFIG`), then the environment. Every key has an environment variable
//! named `TOOLGATE_` followed by its path in upper case joined with `_` (`listen` is
//! `TOOLGATE_LISTEN`, `plugins.dir` is `TOOLGATE_PLUGINS_DIR`); lists are comma-separated. The
//! runtime variables of the security guide keep their own names: `EXECUTE_MODE`,
//! `ALLOW_DIRECT_FALLBACK`, `VERIFY_REQUIRED`, `SANDBOX_NETWORK`, `SANDBOX_READONLY`.
//!
//! Unknown keys, in the file or as `TOOLGATE_*` variables, are errors naming the key.
//!
//! INVARIANT: every key reachable from the environment has a value in [`Config::default`] (no
//! `Option` leaves), because the environment overlay finds keys by walking the defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use toolgate_core::{Mode, Secret};

use crate::http;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `production` or `development`.
    pub mode: Mode,
    /// Address the HTTP server listens on.
    pub listen: String,
    /// Directory of the redb store and of caches.
    pub data_dir: PathBuf,
    /// HS256 signing secret for tokens; at least 64 characters.
    pub jwt_secret: Secret,
    /// Origins allowed by CORS; empty means no cross-origin access.
    pub cors_origins: Vec<String>,
    /// Accounts and tokens.
    pub auth: toolgate_auth::AuthConfig,
    /// HTTP limits, rate limits and TLS.
    pub http: http::HttpConfig,
    /// Plugin loading, limits and capability grants.
    pub plugins: toolgate_runtime::PluginsConfig,
    /// The Rego policy set.
    pub policy: toolgate_policy::PolicyConfig,
    /// Command execution and sandbox profiles.
    pub sandbox: toolgate_sandbox::SandboxConfig,
    /// The host's systemd, PackageKit and mount table (the `services`, `packages` and
    /// `filesystems` host interfaces).
    pub system: toolgate_system::SystemConfig,
    /// Verify, approval and audit settings.
    pub governance: toolgate_governance::GovernanceConfig,
    /// The audit log's chain key.
    pub audit: toolgate_governance::audit::AuditConfig,
    /// Logs, traces and metrics.
    pub telemetry: toolgate_telemetry::TelemetryConfig,
    /// The file this configuration was read from, if any (it may hold the secret: the workspace
    /// must not expose it). Not a key.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: Mode::Production,
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("data"),
            jwt_secret: Secret::default(),
            cors_origins: Vec::new(),
            auth: Default::default(),
            http: Default::default(),
            plugins: Default::default(),
            policy: Default::default(),
            sandbox: Default::default(),
            system: Default::default(),
            governance: Default::default(),
            audit: Default::default(),
            telemetry: Default::default(),
            file: None,
        }
    }
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file or the merged document is not a valid configuration (names the key).
    #[error("invalid configuration{}: {message}", origin.as_deref().map(|o| format!(" in `{o}`")).unwrap_or_default())]
    Invalid {
        /// The file, when the error is in one.
        origin: Option<String>,
        /// What is wrong, naming the key.
        message: String,
    },
    /// An environment variable does not name a key, or its value does not fit the key's type.
    #[error("environment variable `{name}`: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The security guide's runtime variables and the keys they set.
const RUNTIME_VARIABLES: [(&str, &[&str]); 5] = [
    ("EXECUTE_MODE", &["sandbox", "execute_mode"]),
    ("ALLOW_DIRECT_FALLBACK", &["sandbox", "allow_direct_fallback"]),
    ("SANDBOX_NETWORK", &["sandbox", "network"]),
    ("SANDBOX_READONLY", &["sandbox", "readonly"]),
    ("VERIFY_REQUIRED", &["governance", "verify_required"]),
];

/// Variables with the `TOOLGATE_` prefix that are not configuration keys.
const NOT_KEYS: [&str; 2] = ["TOOLGATE_CONFIG", "TOOLGATE_LOG"];

impl Config {
    /// Read the configuration from `file` (if any) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Read the configuration from `file` (if any) and the given environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut doc = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid { origin: None, message: e.to_string() })?;
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            let origin = Some(path.display().to_string());
            let overlay: toml::Value = toml::from_str(&text)
                .map_err(|e| ConfigError::Invalid { origin: origin.clone(), message: e.to_string() })?;
            // Deserialise the file alone first so an unknown key is reported against the file.
            Config::deserialize(overlay.clone())
                .map_err(|e| ConfigError::Invalid { origin, message: e.to_string() })?;
            merge(&mut doc, overlay);
        }
        let defaults = doc.clone();
        for (name, value) in env {
            let path: Vec<String> = if let Some((_, path)) = RUNTIME_VARIABLES.iter().find(|(n, _)| *n == name) {
                path.iter().map(|s| (*s).to_owned()).collect()
            } else if name.starts_with("TOOLGATE_") && !NOT_KEYS.contains(&name.as_str()) {
                env_key_path(&defaults, &name)
                    .ok_or_else(|| ConfigError::Env { name: name.clone(), message: "not a configuration key".into() })?
            } else {
                continue;
            };
            set_from_env(&mut doc, &path, &name, &value)?;
        }
        let mut config =
            Config::deserialize(doc).map_err(|e| ConfigError::Invalid { origin: None, message: e.to_string() })?;
        config.file = file.map(Path::to_path_buf);
        Ok(config)
    }
}

/// Deep-merge `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(base), toml::Value::Table(overlay)) => {
            for (k, v) in overlay {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// The path of the leaf key whose environment variable is `name`, if any.
fn env_key_path(doc: &toml::Value, name: &str) -> Option<Vec<String>> {
    fn walk(value: &toml::Value, prefix: &mut Vec<String>, name: &str) -> Option<Vec<String>> {
        match value {
            toml::Value::Table(table) => table.iter().find_map(|(k, v)| {
                prefix.push(k.clone());
                let found = walk(v, prefix, name);
                prefix.pop();
                found
            }),
            _ => {
                let var = format!("TOOLGATE_{}", prefix.join("_").to_uppercase());
                (var == name).then(|| prefix.clone())
            }
        }
    }
    walk(doc, &mut Vec::new(), name)
}

/// Set the leaf at `path` from an environment value, typed like the value it replaces.
fn set_from_env(doc: &mut toml::Value, path: &[String], name: &str, raw: &str) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::Env { name: name.to_owned(), message };
    let mut slot = doc;
    for key in path {
        slot = slot
            .as_table_mut()
            .and_then(|t| t.get_mut(key))
            .ok_or_else(|| env_err("not a configuration key".into()))?;
    }
    *slot = match slot {
        toml::Value::Boolean(_) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => toml::Value::Boolean(true),
            "false" | "0" | "no" => toml::Value::Boolean(false),
            _ => return Err(env_err(format!("expected true or false, got `{raw}`"))),
        },
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| env_err(format!("expected an integer, got `{raw}`")))?)
        }
        toml::Value::Float(_) => {
            toml::Value::Float(raw.trim().parse().map_err(|_| env_err(format!("expected a number, got `{raw}`")))?)
        }
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_owned()),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn environment_overrides_defaults_by_key_path() -> anyhow::Result<()> {
        let config = Config::load_from(
            None,
            env(&[
                ("TOOLGATE_LISTEN", "0.0.0.0:9000"),
                ("TOOLGATE_CORS_ORIGINS", "https://a.example, https://b.example"),
                ("TOOLGATE_JWT_SECRET", "s3cret"),
                ("PATH", "/usr/bin"),
            ]),
        )?;
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.cors_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(config.jwt_secret.expose(), "s3cret");
        assert_eq!(format!("{:?}", config.jwt_secret), "***");
        Ok(())
    }

    #[test]
    fn unknown_environment_key_is_named() {
        let err = Config::load_from(None, env(&[("TOOLGATE_LISTN", "x")])).err();
        assert!(matches!(err, Some(ConfigError::Env { ref name, .. }) if name == "TOOLGATE_LISTN"), "{err:?}");
    }

    #[test]
    fn unknown_file_key_is_named() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("toolgate.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_port = 3\n")?;
        let err = Config::load_from(Some(&path), env(&[])).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("listen_port"), "{err}");
        Ok(())
    }

    #[test]
    fn bad_environment_value_is_refused() {
        let err = Config::load_from(None, env(&[("SANDBOX_READONLY", "maybe")])).err();
        assert!(matches!(err, Some(ConfigError::Env { ref name, .. }) if name == "SANDBOX_READONLY"), "{err:?}");
    }

    /// The repository's `toolgate.example.toml`, read by the real loader: it must stay a valid
    /// configuration, pass the sandbox start-up checks, and show the embedded defaults it claims.
    #[test]
    fn the_example_file_is_the_embedded_defaults_spelled_out() -> anyhow::Result<()> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../toolgate.example.toml");
        let example = Config::load_from(Some(&path), env(&[]))?;
        assert_eq!(
            toolgate_sandbox::validate(&example.sandbox, example.mode).map_err(|e| e.to_string()),
            Ok(Vec::new())
        );
        assert_eq!(toml::Value::try_from(&example)?, toml::Value::try_from(Config::default())?);
        // The file alone, without the defaults under it, declares every profile and grant.
        let text = std::fs::read_to_string(&path)?;
        let alone: Config = toml::from_str(&text)?;
        assert_eq!(alone.sandbox.profiles, Config::default().sandbox.profiles);
        assert_eq!(alone.plugins.plugin, Config::default().plugins.plugin);
        Ok(())
    }

    #[test]
    fn every_built_in_plugin_is_granted_and_its_profiles_exist_by_default() {
        let config = Config::default();
        let names: Vec<&str> = config.plugins.plugin.keys().map(String::as_str).collect();
        assert_eq!(names, ["apt", "audit", "command", "disk", "docker", "files", "network", "systemd"]);
        let profiles: Vec<&str> =
            config.plugins.plugin.values().flat_map(|p| &p.grants).filter_map(|g| g.strip_prefix("exec:")).collect();
        assert_eq!(profiles, ["exec:default", "exec:host-net", "exec:journal"].map(|p| &p[5..]), "{profiles:?}");
        for profile in profiles {
            assert!(config.sandbox.profiles.contains_key(profile), "`exec:{profile}` granted, profile not declared");
        }
    }

    #[test]
    fn telemetry_section_is_read_from_the_environment() -> anyhow::Result<()> {
        let config = Config::load_from(
            None,
            [
                ("TOOLGATE_TELEMETRY_LOG_FORMAT".to_owned(), "json".to_owned()),
                ("TOOLGATE_TELEMETRY_QUEUE_SIZE".to_owned(), "16".to_owned()),
            ],
        )?;
        assert_eq!(config.telemetry.log_format, toolgate_telemetry::LogFormat::Json);
        assert_eq!(config.telemetry.queue_size, 16);
        Ok(())
    }
}
