//! Manual decisions on machines the automatic matching could not settle: merge a Defender
//! machine into a chosen endpoint, or split it off into an endpoint of its own. The decision
//! sticks: later syncs keep a machine linked to the endpoint it was linked to.

use diesel::prelude::*;

use super::import::OWNER;
use crate::db::models::defender_machines;
use crate::db::models::endpoints;
use crate::db::schema::{defender_machines as dm, endpoint_sources, endpoints as ep};
use crate::db::{AnyConnection, now};
use crate::domain::observations::host_and_fqdn;
use crate::modeling::Modeler;

/// Links the machine to `target`. The endpoint it was linked to is deleted when nothing but
/// Defender knew it; otherwise it keeps its other sources. The next sync (or the re-import done
/// here) brings the machine's OS, profile and risk onto the target.
pub fn merge(conn: &mut AnyConnection, modeler: &Modeler, machine_id: &str, target: i64) -> anyhow::Result<String> {
    conn.write_transaction(|conn| {
        let m =
            defender_machines::find(conn, machine_id)?.ok_or_else(|| anyhow::anyhow!("No such Defender machine."))?;
        endpoints::find(conn, target)?.ok_or_else(|| anyhow::anyhow!("No endpoint with id {target}."))?;
        if m.endpoint_id == Some(target) {
            anyhow::bail!("The machine is already linked to that endpoint.");
        }
        diesel::update(dm::table.find(machine_id))
            .set((
                dm::endpoint_id.eq(Some(target)),
                dm::match_note.eq(""),
                dm::content_hash.eq(""),
                dm::updated_at.eq(now()),
            ))
            .execute(conn)?;
        let mut touched = vec![target];
        if let Some(old) = m.endpoint_id {
            let other_sources: i64 = endpoint_sources::table
                .filter(endpoint_sources::endpoint_id.eq(old))
                .filter(endpoint_sources::source.ne(OWNER))
                .count()
                .get_result(conn)?;
            let still_linked: i64 = dm::table.filter(dm::endpoint_id.eq(old)).count().get_result(conn)?;
            if other_sources == 0 && still_linked == 0 {
                diesel::delete(ep::table.find(old)).execute(conn)?;
            } else {
                touched.push(old);
            }
        }
        endpoints::upsert_source(conn, target, OWNER, m.last_seen.max(1))?;
        modeler.model_ids(conn, &touched)?;
        Ok(format!("{} merged into endpoint {target}; the next sync completes its data.", m.computer_dns_name))
    })
}

/// Detaches the machine from its endpoint into a new endpoint of its own.
pub fn split(conn: &mut AnyConnection, modeler: &Modeler, machine_id: &str) -> anyhow::Result<i64> {
    conn.write_transaction(|conn| {
        let m =
            defender_machines::find(conn, machine_id)?.ok_or_else(|| anyhow::anyhow!("No such Defender machine."))?;
        let (short, fqdn) = host_and_fqdn(&m.computer_dns_name);
        let t = now();
        let values = (
            ep::ip.eq(&m.last_ip),
            ep::hostname.eq(short),
            ep::fqdn.eq(fqdn),
            ep::os_name.eq(&m.os_platform),
            ep::os_version.eq(&m.os_version),
            ep::sources.eq(OWNER),
            ep::first_seen.eq(m.first_seen.max(1)),
            ep::last_seen.eq(m.last_seen.max(1)),
            ep::created_at.eq(t),
            ep::updated_at.eq(t),
        );
        let id = crate::db::insert_returning_id!(conn, ep::table, values, ep::id)?;
        diesel::update(dm::table.find(machine_id))
            .set((
                dm::endpoint_id.eq(Some(id)),
                dm::match_note.eq("split by an administrator"),
                dm::content_hash.eq(""),
                dm::updated_at.eq(t),
            ))
            .execute(conn)?;
        endpoints::upsert_source(conn, id, OWNER, m.last_seen.max(1))?;
        if let Some(old) = m.endpoint_id {
            forget_defender(conn, old)?;
        }
        let mut touched = vec![id];
        touched.extend(m.endpoint_id);
        modeler.model_ids(conn, &touched)?;
        Ok(id)
    })
}

/// What Defender contributed to an endpoint it no longer describes: its source, its risk factors
/// and its profile assignment (the OS fields stay: nothing else reported them).
fn forget_defender(conn: &mut AnyConnection, endpoint_id: i64) -> anyhow::Result<()> {
    use crate::db::models::{profiles, risk};
    if dm::table.filter(dm::endpoint_id.eq(endpoint_id)).filter(dm::stale.eq(false)).count().get_result::<i64>(conn)?
        > 0
    {
        return Ok(());
    }
    diesel::delete(
        endpoint_sources::table
            .filter(endpoint_sources::endpoint_id.eq(endpoint_id))
            .filter(endpoint_sources::source.eq(OWNER)),
    )
    .execute(conn)?;
    let sources: Vec<String> = endpoint_sources::table
        .filter(endpoint_sources::endpoint_id.eq(endpoint_id))
        .select(endpoint_sources::source)
        .order(endpoint_sources::source.asc())
        .load(conn)?;
    diesel::update(ep::table.find(endpoint_id)).set(ep::sources.eq(sources.join(","))).execute(conn)?;
    for source in [super::import::EXPOSURE_SOURCE, super::import::ALERTS_SOURCE] {
        risk::set(conn, endpoint_id, source, None)?;
    }
    profiles::unassign_owner_except(conn, endpoint_id, OWNER, &[])?;
    Ok(())
}
