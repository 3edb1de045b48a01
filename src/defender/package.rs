//! The investigation package of a succeeded collection: Defender is asked for its link
//! (`GET /api/machineactions/{id}/GetPackageUri`,
//! <https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri>) only when a
//! person or an API token asks for the package, and the link is handed straight over. It is
//! "valid for a short time", and anyone holding it can download the package: it is never
//! stored, logged, audited or put into an error, here or by the client.

use std::time::Duration;

use url::Url;

use super::DefenderError;
use super::service::DefenderService;
use crate::db::models::actions::ActionStatus;
use crate::db::models::audit;
use crate::domain::action::COLLECT_INVESTIGATION_PACKAGE;

/// How long a person waits for the link. GetPackageUri allows 2 calls a minute; when they are
/// used up the client's limiter would hold the call for up to a minute, so the answer says so
/// instead.
const LINK_WAIT: Duration = Duration::from_secs(5);

/// Why there is no link.
#[derive(Debug)]
pub enum NoPackage {
    /// No such action, or one that did not collect a package.
    NotFound,
    /// The collection has not succeeded (yet), or Defender has no package for it.
    NotReady(String),
    /// GetPackageUri's budget is used up for now.
    Throttled(String),
    /// Defender could not be asked, or failed.
    Failed(String),
}

/// The link to the package collected by the product's action `id`, asked of Defender now; the
/// action is refreshed from Defender first while it is open. `user` is audited (without the link).
pub async fn link(ctx: &DefenderService, id: i64, user: &str) -> anyhow::Result<Result<Url, NoPackage>> {
    let Some(row) = super::actions::find_refreshed(ctx, id).await? else { return Ok(Err(NoPackage::NotFound)) };
    if row.action_type != COLLECT_INVESTIGATION_PACKAGE {
        return Ok(Err(NoPackage::NotFound));
    }
    if row.status != ActionStatus::Succeeded || row.defender_action_id.is_empty() {
        let what = if row.is_open() {
            "wait until Defender reports the collection Succeeded"
        } else {
            "this collection did not succeed; collect a new package"
        };
        return Ok(Err(NoPackage::NotReady(format!(
            "The investigation package can be downloaded once its collection has succeeded. It is {} now: {what}.",
            row.status
        ))));
    }
    let client = match ctx.client().await {
        Ok(c) => c,
        Err(why) => return Ok(Err(NoPackage::Failed(why.to_string()))),
    };
    let asked = tokio::time::timeout(LINK_WAIT, client.package_uri(&row.defender_action_id)).await;
    let throttled = || {
        NoPackage::Throttled(
            "Microsoft Defender gives at most 2 package links a minute (120 an hour) to this application, and they \
             are used up: try again in a minute."
                .into(),
        )
    };
    let url = match asked {
        Err(_) | Ok(Err(DefenderError::Throttled { .. })) => return Ok(Err(throttled())),
        Ok(Err(DefenderError::NotFound)) => {
            return Ok(Err(NoPackage::NotReady(
                "Microsoft Defender has no package for this collection (it answers 404 while a collection is not \
                 complete); try again shortly."
                    .into(),
            )));
        }
        Ok(Err(e)) => return Ok(Err(NoPackage::Failed(e.plain_words()))),
        Ok(Ok(url)) => url,
    };
    let (user, machine, defender_id) = (user.to_owned(), row.machine_id.clone(), row.defender_action_id.clone());
    ctx.db
        .run(move |c| {
            Ok(audit::entry(&user, "defender.package")
                .target(&machine)
                .outcome("link issued")
                .details(&format!("investigation package of action {id} (Defender action {defender_id})"))
                .record(c)?)
        })
        .await?;
    Ok(Ok(url))
}
