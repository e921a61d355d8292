//! Named contexts: a cluster's endpoints and the credentials for it, kept in a
//! file under a name, so that `--context prod` replaces five flags (as
//! kubectl's and nats' contexts do).
//!
//! The file is `$VERITRAIL_CLI_CONFIG`, or `$XDG_CONFIG_HOME/veritrail/config.toml`
//! (`~/.config/veritrail/config.toml`):
//!
//! ```toml
//! context = "prod"              # used when no --context is given (optional)
//!
//! [contexts.prod]
//! endpoints = ["node1.example.com:7001", "node2.example.com:7001"]
//! ca = "/etc/veritrail/ca.pem"
//! cert = "/home/ann/.veritrail/ann.pem"
//! key = "/home/ann/.veritrail/ann.key"
//!
//! [contexts.local]
//! endpoints = ["127.0.0.1:7001"]
//! ```
//!
//! A flag on the command line wins over an environment variable, which wins
//! over the context, which wins over the built-in defaults. Relative paths in
//! the file are relative to the file's directory. (`VERITRAIL_CONFIG` is the
//! node's configuration file, which a node's host or pod often sets.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The context used when none is named.
    pub context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One cluster and the credentials for it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub endpoints: Option<Vec<String>>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A file holding a bearer token (the token itself stays out of the file).
    pub token_file: Option<PathBuf>,
}

/// Where the configuration file is looked for.
pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("VERITRAIL_CLI_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("veritrail").join("config.toml"))
}

impl ConfigFile {
    /// The file at `path`; an empty configuration when there is none.
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut file: ConfigFile =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for context in file.contexts.values_mut() {
            for p in [
                &mut context.ca,
                &mut context.cert,
                &mut context.key,
                &mut context.token_file,
            ]
            .into_iter()
            .flatten()
            {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        Ok(file)
    }

    /// The context named `name`, else the file's default one, else none.
    pub fn select(
        &self,
        name: Option<&str>,
        path: &Path,
    ) -> anyhow::Result<Option<(String, Context)>> {
        let Some(name) = name.or(self.context.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get(name) {
            Some(context) => Ok(Some((name.to_owned(), context.clone()))),
            None if self.contexts.is_empty() => {
                bail!("no context {name:?}: {} defines none", path.display())
            }
            None => bail!(
                "no context {name:?} in {}; it defines {}",
                path.display(),
                self.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_load_with_paths_beside_the_file() {
        let dir = tempfile_dir();
        let path = dir.join("config.toml");
        std::fs::write(
            &path,
            "context = \"prod\"\n[contexts.prod]\nendpoints = [\"a:1\", \"b:2\"]\nca = \"ca.pem\"\n\
             [contexts.lab]\nendpoints = [\"c:3\"]\ntoken_file = \"/abs/token\"\n",
        )
        .expect("write");
        let file = ConfigFile::load(&path).expect("load");
        let (name, prod) = file
            .select(None, &path)
            .expect("select")
            .expect("a context");
        assert_eq!(name, "prod");
        assert_eq!(
            prod.endpoints.as_deref(),
            Some(&["a:1".to_owned(), "b:2".to_owned()][..])
        );
        assert_eq!(prod.ca, Some(dir.join("ca.pem")));
        let (_, lab) = file
            .select(Some("lab"), &path)
            .expect("select")
            .expect("lab");
        assert_eq!(lab.token_file, Some(PathBuf::from("/abs/token")));
        let missing = file.select(Some("nope"), &path).expect_err("unknown");
        assert!(missing.to_string().contains("lab, prod"), "{missing}");
        assert!(
            ConfigFile::load(&dir.join("absent.toml"))
                .expect("none")
                .contexts
                .is_empty()
        );
        std::fs::write(&path, "[contexts.x]\nendpoint = \"typo\"\n").expect("write");
        assert!(ConfigFile::load(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("veritrail-context-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }
}
