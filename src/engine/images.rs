//! Image queries for the CLI.

use super::{Engine, EngineError};
use serde_json::json;

impl Engine {
    /// `image inspect`, with Docker's field names. The built-in busybox is created on
    /// first use, like `run` does.
    pub fn image_inspect(&self, reference: &str) -> Result<serde_json::Value, EngineError> {
        let img = self.images.find_or_builtin(reference)?;
        let c = &img.config;
        let cfg = c.config().clone().unwrap_or_default();
        let repo = img
            .tags
            .iter()
            .map(|t| t.rsplit_once(':').map(|(r, _)| r).unwrap_or(t).to_string())
            .collect::<Vec<_>>();
        Ok(json!({
            "Id": img.id,
            "RepoTags": img.tags,
            "RepoDigests": repo.iter().map(|r| format!("{r}@{}", img.manifest_digest)).collect::<Vec<_>>(),
            "Created": c.created(),
            "Architecture": c.architecture().to_string(),
            "Os": c.os().to_string(),
            "Size": img.size(),
            "Config": {
                "Env": cfg.env(),
                "Cmd": cfg.cmd(),
                "Entrypoint": cfg.entrypoint(),
                "WorkingDir": cfg.working_dir().clone().unwrap_or_default(),
                "User": cfg.user().clone().unwrap_or_default(),
                "ExposedPorts": cfg.exposed_ports(),
                "Labels": cfg.labels(),
            },
            "RootFS": {
                "Type": "layers",
                "Layers": img.diff_ids(),
            },
            "Manifest": img.manifest_digest,
            "History": c.history(),
        }))
    }
}
