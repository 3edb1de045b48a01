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
    let over_cap = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let values = serde::Deserializer::deserialize_seq(&mut de, CappedItems(&over_cap))
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| match over_cap.get() {
            true => format!("A batch holds at most {MAX_BATCH} observations; this one has more. Send it in parts."),
            false => format!("The body must be a JSON array of observations: {e}"),
        })?;
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i, serde_json::from_value::<RawObservation>(v).map_err(|e| format!("not an observation: {e}"))))
        .collect())
}

/// The items of a JSON array, refused at the item cap while the array is still being read: a
/// body of a million small items stops after [`MAX_BATCH`] of them, not after all were built.
struct CappedItems<'a>(&'a std::cell::Cell<bool>);

impl<'de> serde::de::Visitor<'de> for CappedItems<'_> {
    type Value = Vec<serde_json::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of at most {MAX_BATCH} observations")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
        while let Some(item) = seq.next_element::<serde_json::Value>()? {
            if items.len() == MAX_BATCH {
                self.0.set(true);
                return Err(serde::de::Error::custom("too many observations"));
            }
            items.push(item);
        }
        Ok(items)
    }
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
                Ok::<_, crate::db::DbError>(merged.counts)
            })?)
        })
        .await?
    };
    Ok(IngestReport { received, created, updated, rejected })
}
