//! Documents served through the protocol. The constitution lives in the database
//! (seeded from `<data-dir>/docs/CONSTITUTION.md`, editable with `docs.update`);
//! the participant guide is built in; the controller directive is read from
//! `<data-dir>/docs/CONTROLLER.md` on each request, so edits apply at once.

use std::path::Path;

use broodlink_protocol::{DocInfo, DocListResult, DocResult, DocUpdateResult, DocsUpdatedEvent, Event};

use super::{Caller, Linkspace};
use crate::error::{ServiceError, ServiceResult};
use crate::hub::Audience;
use crate::keys;
use crate::store::{Store, StoreResult};

pub const PARTICIPANT_GUIDE: &str = include_str!("../../docs/PARTICIPANT.md");
pub const DEFAULT_CONSTITUTION: &str = include_str!("../../docs/CONSTITUTION.md");
pub const DEFAULT_CONTROLLER: &str = include_str!("../../docs/CONTROLLER.md");

const CONSTITUTION: &str = "constitution";
const CONSTITUTION_VERSION: &str = "constitution_version";
/// Hash of the `CONSTITUTION.md` last imported, to notice when the file was edited.
const CONSTITUTION_SEED_HASH: &str = "constitution_seed_hash";

/// The documents that exist, in listing order.
enum Doc {
    Constitution,
    Participant,
    Controller,
}

impl Doc {
    const ALL: [Doc; 3] = [Doc::Constitution, Doc::Participant, Doc::Controller];

    fn named(name: &str) -> Option<Doc> {
        Doc::ALL.into_iter().find(|doc| doc.name() == name)
    }

    fn name(&self) -> &'static str {
        match self {
            Doc::Constitution => "constitution",
            Doc::Participant => "participant",
            Doc::Controller => "controller",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Doc::Constitution => "The linkspace's rules, set by the controller",
            Doc::Participant => "How a participant agent uses BroodLink",
            Doc::Controller => "The controller's directive (controller only)",
        }
    }

    fn readable_by(&self, caller: &Caller<'_>) -> bool {
        !matches!(self, Doc::Controller) || caller.is_controller()
    }
}

/// Imports `CONSTITUTION.md` when the database has no constitution yet, or when the
/// file changed since it was last imported (as a new version).
pub(super) async fn seed_constitution(store: &Store, docs_dir: Option<&Path>) -> StoreResult<()> {
    let from_file = docs_dir.and_then(|dir| std::fs::read_to_string(dir.join("CONSTITUTION.md")).ok());
    let current = store.setting(CONSTITUTION).await?;
    let version = store.setting(CONSTITUTION_VERSION).await?;
    let text = match (&from_file, &current) {
        (Some(text), _) => text.as_str(),
        (None, Some(_)) => return Ok(()),
        (None, None) => DEFAULT_CONSTITUTION,
    };
    let hash = keys::hash(text);
    if current.is_some() && store.setting(CONSTITUTION_SEED_HASH).await?.as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    let version = match (current, version) {
        (Some(_), Some(version)) => bump_version(&version),
        _ => "1.0".to_owned(),
    };
    tracing::info!(version = %version, "imported CONSTITUTION.md");
    store
        .set_settings(&[
            (CONSTITUTION, Some(text)),
            (CONSTITUTION_VERSION, Some(&version)),
            (CONSTITUTION_SEED_HASH, Some(&hash)),
        ])
        .await
}

/// `1.0` → `1.1`, `2` → `3`, `draft` → `draft.1`.
fn bump_version(version: &str) -> String {
    let (head, last) = version.rsplit_once('.').unwrap_or(("", version));
    match last.parse::<u64>() {
        Ok(n) if head.is_empty() => (n + 1).to_string(),
        Ok(n) => format!("{head}.{}", n + 1),
        Err(_) => format!("{version}.1"),
    }
}

impl Linkspace {
    pub async fn docs_list(&self, caller: &Caller<'_>) -> ServiceResult<DocListResult> {
        let mut docs = Vec::new();
        for doc in Doc::ALL {
            if doc.readable_by(caller) {
                let got = self.read_doc(&doc).await?;
                docs.push(DocInfo {
                    name: doc.name().into(),
                    title: doc.title().into(),
                    version: got.version,
                    editable: got.editable,
                });
            }
        }
        Ok(DocListResult { docs })
    }

    pub async fn docs_get(&self, caller: &Caller<'_>, name: String) -> ServiceResult<DocResult> {
        match Doc::named(&name) {
            Some(doc) if doc.readable_by(caller) => self.read_doc(&doc).await,
            _ => Err(ServiceError::DocumentNotFound(name)),
        }
    }

    pub async fn docs_update(
        &self,
        caller: &Caller<'_>,
        name: String,
        content: String,
        version: Option<String>,
    ) -> ServiceResult<DocUpdateResult> {
        caller.require_controller()?;
        match Doc::named(&name) {
            Some(Doc::Constitution) => {}
            Some(_) => return Err(ServiceError::ReadOnlyDocument(name)),
            None => return Err(ServiceError::DocumentNotFound(name)),
        }
        if content.trim().is_empty() {
            return Err(ServiceError::InvalidParams("`content` must not be empty".into()));
        }
        let version = version.map(|v| super::check_text("version", &v, 50)).transpose()?;
        let _guard = self.write().await;
        let version = match version {
            Some(v) => v,
            None => bump_version(&self.store.setting(CONSTITUTION_VERSION).await?.unwrap_or_else(|| "1.0".into())),
        };
        self.store.set_settings(&[(CONSTITUTION, Some(&content)), (CONSTITUTION_VERSION, Some(&version))]).await?;
        let event = Event::DocsUpdated(DocsUpdatedEvent {
            name: name.clone(),
            version: version.clone(),
            updated_by: caller.agent_id().to_owned(),
        });
        self.hub.send(Audience::Everyone, &event, None);
        Ok(DocUpdateResult { name, version })
    }

    async fn read_doc(&self, doc: &Doc) -> ServiceResult<DocResult> {
        let (content, version, editable) = match doc {
            Doc::Constitution => (
                self.store.setting(CONSTITUTION).await?.unwrap_or_default(),
                self.store.setting(CONSTITUTION_VERSION).await?.unwrap_or_else(|| "1.0".into()),
                true,
            ),
            Doc::Participant => (PARTICIPANT_GUIDE.to_owned(), env!("CARGO_PKG_VERSION").to_owned(), false),
            Doc::Controller => {
                let text = self
                    .docs_dir
                    .as_ref()
                    .and_then(|dir| std::fs::read_to_string(dir.join("CONTROLLER.md")).ok())
                    .unwrap_or_else(|| DEFAULT_CONTROLLER.to_owned());
                // The file has no version of its own: name it by its content.
                let version = format!("sha256:{}", &keys::hash(&text)[..12]);
                (text, version, false)
            }
        };
        Ok(DocResult { name: doc.name().into(), content, version, editable })
    }
}

#[cfg(test)]
mod tests {
    use super::bump_version;

    #[test]
    fn versions_bump_their_last_number() {
        assert_eq!(bump_version("1.0"), "1.1");
        assert_eq!(bump_version("1.9"), "1.10");
        assert_eq!(bump_version("2"), "3");
        assert_eq!(bump_version("draft"), "draft.1");
    }
}
