//! A fingerprint of the inventory the product shows (endpoints, their addresses, sources and
//! risk, the Defender machines, profile assignments): row counts and a checksum over every
//! row, so that a test can say "the last good data is still there, unchanged".

use std::collections::BTreeMap;

use diesel::prelude::*;
use endpoint_analytics::db::Db;
use endpoint_analytics::db::models::defender_machines::DefenderMachine;
use endpoint_analytics::db::models::endpoints::{Endpoint, EndpointIp};
use endpoint_analytics::db::models::risk::RiskFactorRow;
use endpoint_analytics::db::schema::{
    defender_machines, endpoint_ips, endpoint_sources, endpoints, profile_assignments, risk_factors,
};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Rows per table.
    pub counts: BTreeMap<&'static str, usize>,
    /// SHA-256 over every row of those tables, in key order.
    pub checksum: String,
}

impl Snapshot {
    pub fn count(&self, table: &str) -> usize {
        self.counts.get(table).copied().unwrap_or(0)
    }
}

fn digest<T: std::fmt::Debug>(h: &mut Sha256, rows: &[T]) {
    for r in rows {
        h.update(format!("{r:?}\n").as_bytes());
    }
}

pub async fn snapshot(db: &Db) -> Snapshot {
    db.run(|c| {
        let e: Vec<Endpoint> = endpoints::table.order(endpoints::id).select(Endpoint::as_select()).load(c)?;
        let ips: Vec<EndpointIp> = endpoint_ips::table
            .order((endpoint_ips::endpoint_id, endpoint_ips::ip))
            .select(EndpointIp::as_select())
            .load(c)?;
        let sources: Vec<(i64, String)> = endpoint_sources::table
            .order((endpoint_sources::endpoint_id, endpoint_sources::source))
            .select((endpoint_sources::endpoint_id, endpoint_sources::source))
            .load(c)?;
        let risk: Vec<RiskFactorRow> = risk_factors::table
            .order((risk_factors::endpoint_id, risk_factors::source))
            .select(RiskFactorRow::as_select())
            .load(c)?;
        let machines: Vec<DefenderMachine> = defender_machines::table
            .order(defender_machines::machine_id)
            .select(DefenderMachine::as_select())
            .load(c)?;
        let assigned: Vec<(i64, i64)> = profile_assignments::table
            .order((profile_assignments::endpoint_id, profile_assignments::profile_id))
            .select((profile_assignments::endpoint_id, profile_assignments::profile_id))
            .load(c)?;
        let mut h = Sha256::new();
        digest(&mut h, &e);
        digest(&mut h, &ips);
        digest(&mut h, &sources);
        digest(&mut h, &risk);
        digest(&mut h, &machines);
        digest(&mut h, &assigned);
        let counts = BTreeMap::from([
            ("endpoints", e.len()),
            ("endpoint_ips", ips.len()),
            ("endpoint_sources", sources.len()),
            ("risk_factors", risk.len()),
            ("defender_machines", machines.len()),
            ("profile_assignments", assigned.len()),
        ]);
        Ok(Snapshot { counts, checksum: hex::encode(h.finalize()) })
    })
    .await
    .expect("the inventory can be read")
}
