//! `siesta status`, `siesta sleep` and `siesta wake`: what users run.
use crate::annotations::Action;

pub async fn run(_namespace: Option<&str>) -> crate::Result<()> {
    Err(crate::Error::Other("`status` is not built yet".into()))
}

pub async fn command(_namespace: &str, _action: Action) -> crate::Result<()> {
    Err(crate::Error::Other(
        "`sleep`/`wake` are not built yet".into(),
    ))
}
