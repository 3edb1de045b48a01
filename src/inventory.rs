//! Bringing observations into the inventory, whichever way they arrive (JSON API, CSV upload):
//! validate each one, merge the valid ones in one transaction, and report every rejected one
//! with its reason.

use serde::Serialize;

use crate::db::Db;

use crate::db::models::endpoints::{self, MergeCounts};
use crate::domain::observations::{MAX_BATCH, Observation, RawObservation};
use crate::modeling::Modeler;

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    /// Position in the batch: the array index for JSON, the line number for CSV.
    pub index: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub received: usize,
    pub created: usize,
    pub updated: usize,
    pub rejected: Vec<Rejected>,
}

/// A batch as read: each observation (or why it could not even be read) with its position.
pub type RawBatch = Vec<(usize, Result<RawObservation, String>)>;

/// Reads a JSON body of observations (`POST /api/v1/observations`): an array of at most
/// [`MAX_BATCH`] items, each an observation or the reason it is not one. Nothing is validated
/// beyond the shape; [`ingest`] does that.
pub fn parse_json_batch(body: &[u8]) -> Result<RawBatch, String> {
    let values: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| format!("The body must be a JSON array of observations: {e}"))?;
    if values.len() > MAX_BATCH {
        return Err(format!("A batch holds at most {MAX_BATCH} observations; this one has {}.", values.len()));
    }
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i, serde_json::from_value::<RawObservation>(v).map_err(|e| format!("not an observation: {e}"))))
        .collect())
}

/// Validates and merges a batch. `items` pairs each observation (or the reason it could not even
/// be read) with its position for the report.
pub async fn ingest(db: &Db, modeler: &Modeler, items: RawBatch, source: &'static str) -> anyhow::Result<IngestReport> {
    let now = chrono::Utc::now();
    let received = items.len();
    let mut valid: Vec<Observation> = Vec::with_capacity(received);
    let mut rejected = Vec::new();
    for (index, item) in items {
        match item.and_then(|raw| raw.validate(now)) {
            Ok(o) => valid.push(o),
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    let modeler = modeler.clone();
    let MergeCounts { created, updated } = if valid.is_empty() {
        MergeCounts::default()
    } else {
        db.run(move |c| {
            // Merge and model in one transaction: an endpoint is never seen without its profile.
            Ok(c.write_transaction(|c| {
                let vendor = |mac: &str| crate::domain::oui::vendor_for_mac(mac).map(|v| v.into_owned());
                let merged = endpoints::apply_observations(c, &valid, source, vendor)?;
                modeler.model_ids(c, &merged.touched)?;
                Ok::<_, diesel::result::Error>(merged.counts)
            })?)
        })
        .await?
    };
    Ok(IngestReport { received, created, updated, rejected })
}
