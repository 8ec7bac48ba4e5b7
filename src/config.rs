//! The configuration file (`--config.file`): the sources to follow.
//!
//! ```yaml
//! sources:
//!   - path: /var/log/mail.log        # a file or a glob
//!     format: auto                   # or a format name, e.g. postfix
//!     name: mx1                      # the `source` label (default: the path)
//!     block_size: 1024               # Messaging Server logs: BLOCK_SIZE (bytes per logged block)
//!     port: 587                      # hosting SMTP logs: the listening port
//! ```
//!
//! `port` is the port of the SMTP server whose log this is (hosting
//! providers write one SMTP log per port); it becomes the `service` label
//! of the log's SMTP metrics. Without it, a mail port number in the file
//! name is used ([`port_from_file_name`]).
//!
//! `block_size` is the Messaging Server `BLOCK_SIZE` option of the MTA
//! that writes the log (its sizes are logged in blocks); without it, the
//! `--messaging-server.block-size` flag applies.
//!
//! Both are per-source [`FormatSettings`]: a format ignores the settings of
//! the others.
//!
//! Unknown keys are errors that name the key and its line, so a typo never
//! silently drops a setting.

use crate::parser::Format;
use crate::pipeline::FormatSettings;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors reading the configuration, each saying how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: source {index}: unknown format {format:?}; use auto or one of: {known}")]
    UnknownFormat {
        path: PathBuf,
        index: usize,
        format: String,
        known: String,
    },
    #[error("config file {path}: source {index}: invalid glob {pattern:?}: {message}")]
    BadGlob {
        path: PathBuf,
        index: usize,
        pattern: String,
        message: String,
    },
    #[error("config file {path}: source {index}: block_size must be a number of bytes of at least 1 (Messaging Server's BLOCK_SIZE), got 0")]
    ZeroBlockSize { path: PathBuf, index: usize },
    #[error("config file {path}: no sources; add a `sources:` list with at least one `path:`")]
    NoSources { path: PathBuf },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    sources: Vec<RawSource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    path: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    block_size: Option<u64>,
    #[serde(default)]
    port: Option<u16>,
}

/// One file to follow.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSource {
    pub path: PathBuf,
    /// `None`: detect from the content.
    pub format: Option<Format>,
    /// The `source` label.
    pub name: String,
    /// The settings of particular formats (`block_size`, `port`); the
    /// port is the configured one, else taken from the file name.
    pub settings: FormatSettings,
}

/// Port numbers recognised in file names: SMTP (25), SMTPS (465),
/// submission (587) and the common alternative 2525.
pub const MAIL_PORTS: [u16; 4] = [25, 465, 587, 2525];

/// The first run of digits in the file name (not the directory) that is
/// one of [`MAIL_PORTS`]: `smtp_465.log` and `smtp-587.log.1` give 465
/// and 587. Other numbers (dates, rotation suffixes) are skipped.
pub fn port_from_file_name(path: &Path) -> Option<u16> {
    let name = path.file_name()?.to_str()?;
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|digits| digits.parse::<u16>().ok())
        .find(|port| MAIL_PORTS.contains(port))
}

/// Reads and validates a configuration file; globs are expanded.
pub fn load(path: &Path) -> Result<Vec<FileSource>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses configuration text (`path` is used in messages only).
pub fn parse(path: &Path, text: &str) -> Result<Vec<FileSource>, ConfigError> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: with_line(e.to_string(), text),
    })?;
    if raw.sources.is_empty() {
        return Err(ConfigError::NoSources {
            path: path.to_path_buf(),
        });
    }
    let mut out = Vec::new();
    for (index, source) in raw.sources.into_iter().enumerate() {
        let index = index + 1;
        let format = match source.format.as_deref() {
            None | Some("auto") => None,
            Some(name) => {
                Some(
                    Format::from_name(name).ok_or_else(|| ConfigError::UnknownFormat {
                        path: path.to_path_buf(),
                        index,
                        format: name.to_string(),
                        known: Format::names(),
                    })?,
                )
            }
        };
        if source.block_size == Some(0) {
            return Err(ConfigError::ZeroBlockSize {
                path: path.to_path_buf(),
                index,
            });
        }
        let files = expand(&source.path).map_err(|message| ConfigError::BadGlob {
            path: path.to_path_buf(),
            index,
            pattern: source.path.clone(),
            message,
        })?;
        for file in files {
            let name = source
                .name
                .clone()
                .unwrap_or_else(|| file.display().to_string());
            let port = source.port.or_else(|| port_from_file_name(&file));
            out.push(FileSource {
                path: file,
                format,
                name,
                settings: FormatSettings {
                    port,
                    block_size: source.block_size,
                },
            });
        }
    }
    Ok(out)
}

/// serde_yaml reports no position for some errors (an unknown key at the
/// top level); add the line of the offending key so the user can find it.
fn with_line(message: String, text: &str) -> String {
    if message.contains(" line ") {
        return message;
    }
    let key = message
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key);
    let Some(key) = key else {
        return message;
    };
    let line = text.lines().position(|l| {
        let l = l.trim_start().trim_start_matches("- ").trim_start();
        l.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
    });
    match line {
        Some(n) => format!("{message} at line {}", n + 1),
        None => message,
    }
}

/// A path with glob characters expands to the files matching now (sorted);
/// a plain path stays as it is, even if the file does not exist yet (it is
/// picked up when created).
pub fn expand(pattern: &str) -> Result<Vec<PathBuf>, String> {
    if !pattern.contains(['*', '?', '[']) {
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let paths = glob::glob(pattern).map_err(|e| e.to_string())?;
    let mut files: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        tracing::warn!(pattern, "glob matches no file yet");
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_with_formats_and_names() {
        let cfg = "sources:\n  - path: /var/log/mail.log\n    format: postfix\n    name: mx1\n  - path: /tmp/other.log\n";
        let s = parse(Path::new("c.yml"), cfg).unwrap();
        assert_eq!(
            s,
            vec![
                FileSource {
                    path: "/var/log/mail.log".into(),
                    format: Some(Format::Postfix),
                    name: "mx1".into(),
                    settings: FormatSettings::default(),
                },
                FileSource {
                    path: "/tmp/other.log".into(),
                    format: None,
                    name: "/tmp/other.log".into(),
                    settings: FormatSettings::default(),
                },
            ]
        );
    }

    #[test]
    fn block_size_per_source() {
        let cfg = "sources:\n  - path: /var/log/imta/mail.log_current\n    format: messaging_server\n    block_size: 512\n";
        let s = parse(Path::new("c.yml"), cfg).unwrap();
        assert_eq!(s[0].format, Some(Format::MessagingServer));
        assert_eq!(s[0].settings.block_size, Some(512));
        let err = parse(
            Path::new("c.yml"),
            "sources:\n  - path: x\n    block_size: 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("block_size"), "{err}");
    }

    #[test]
    fn port_is_configured_or_taken_from_the_file_name() {
        let cfg = "sources:\n  - path: /var/log/mail/smtp_465.log\n    format: hosting_smtp\n  - path: /var/log/mail/smtp_465.log\n    port: 2526\n  - path: /var/log/mail/smtp-587.log.1\n  - path: /var/log/mail25/smtp-20210309.log\n";
        let s = parse(Path::new("c.yml"), cfg).unwrap();
        let ports: Vec<_> = s.iter().map(|s| s.settings.port).collect();
        assert_eq!(ports, vec![Some(465), Some(2526), Some(587), None]);
        assert_eq!(s[0].format, Some(Format::HostingSmtp));
        assert_eq!(port_from_file_name(Path::new("smtp25.log")), Some(25));
        assert_eq!(port_from_file_name(Path::new("smtp.log.1")), None);
        assert_eq!(port_from_file_name(Path::new("99999-587")), Some(587));
    }

    #[test]
    fn port_must_be_a_port_number() {
        let err = parse(
            Path::new("c.yml"),
            "sources:\n  - path: x\n    port: 70000\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("70000") || err.contains("port"), "{err}");
        let err = parse(Path::new("c.yml"), "sources:\n  - path: x\n    prot: 25\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let cfg = "sources:\n  - path: /var/log/mail.log\n    fromat: postfix\n";
        let err = parse(Path::new("c.yml"), cfg).unwrap_err().to_string();
        assert!(err.contains("fromat"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn unknown_top_level_key() {
        let err = parse(Path::new("c.yml"), "source:\n  - path: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `source`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn unknown_format_is_an_error() {
        let err = parse(
            Path::new("c.yml"),
            "sources:\n  - path: x\n    format: bogus\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bogus") && err.contains("postfix"), "{err}");
    }

    #[test]
    fn globs_expand_to_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.log", "a.log", "c.txt"] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        let pattern = format!("{}/*.log", dir.path().display());
        let cfg = format!("sources:\n  - path: {pattern}\n    name: mx\n");
        let s = parse(Path::new("c.yml"), &cfg).unwrap();
        let paths: Vec<_> = s.iter().map(|s| s.path.clone()).collect();
        assert_eq!(
            paths,
            vec![dir.path().join("a.log"), dir.path().join("b.log")]
        );
        assert!(s.iter().all(|s| s.name == "mx"));
    }
}
