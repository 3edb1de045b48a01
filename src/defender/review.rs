//! Manual decisions on machines the automatic matching could not settle: merge a Defender
//! machine into a chosen endpoint, or split it off into an endpoint of its own. The decision
//! sticks: later syncs keep a machine linked to the endpoint it was linked to.

use super::import::OWNER;
use crate::db::AnyConnection;
use crate::db::models::defender_machines;
use crate::db::models::endpoints::{self, NewEndpoint};
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
        defender_machines::link(conn, machine_id, target, "")?;
        let mut touched = vec![target];
        if let Some(old) = m.endpoint_id {
            let other_sources = endpoints::count_other_sources(conn, old, OWNER)?;
            let still_linked = defender_machines::count_linked(conn, old, false)?;
            if other_sources == 0 && still_linked == 0 {
                endpoints::delete(conn, old)?;
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
        let id = endpoints::insert_one(
            conn,
            &NewEndpoint {
                ip: &m.last_ip,
                hostname: &short,
                fqdn: &fqdn,
                os_name: &m.os_platform,
                os_version: &m.os_version,
                source: OWNER,
                first_seen: m.first_seen.max(1),
                last_seen: m.last_seen.max(1),
            },
        )?;
        defender_machines::link(conn, machine_id, id, "split by an administrator")?;
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
    if defender_machines::count_linked(conn, endpoint_id, true)? > 0 {
        return Ok(());
    }
    endpoints::remove_source(conn, endpoint_id, OWNER)?;
    for source in [super::import::EXPOSURE_SOURCE, super::import::ALERTS_SOURCE] {
        risk::set(conn, endpoint_id, source, None)?;
    }
    profiles::unassign_owner_except(conn, endpoint_id, OWNER, &[])?;
    Ok(())
}
