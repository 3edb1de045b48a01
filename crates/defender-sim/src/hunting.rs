//! Advanced hunting, `POST /api/advancedqueries/run` (`L:run-advanced-query-api`), for a
//! small KQL subset:
//!
//! ```text
//! <Table> [| where <Column> == "value"]... [| take N]...
//! ```
//!
//! with `<Table>` one of `DeviceInfo`, `DeviceNetworkInfo`, `DeviceTvmSoftwareVulnerabilities`,
//! string literals in single or double quotes, `==` (case-sensitive), `=~` (case-insensitive),
//! `!=`, and `take`/`limit`. Stages apply in order. Anything else is answered 400 BadRequest
//! naming what is supported; results are capped at 100,000 rows like the service.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};

use super::SimState;
use super::api::{Api, Reply, serve};
use super::catalog::PRODUCTS;
use super::tenant::{Machine, Tenant};
use super::views::iso7;

const MAX_ROWS: usize = 100_000;
const SUPPORTED: &str = "The simulator supports only: <Table> [| where <Column> == \"value\"] [| take N], \
with <Table> one of DeviceInfo, DeviceNetworkInfo, DeviceTvmSoftwareVulnerabilities (operators ==, =~, !=; take or limit)";

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    Where { column: String, op: &'static str, value: String },
    Take(usize),
}

fn split_pipes(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in q.chars() {
        match (quote, c) {
            (Some(qc), c) if c == qc => {
                quote = None;
                cur.push(c);
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (None, '|') => out.push(std::mem::take(&mut cur)),
            (None, c) => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

fn parse_stage(s: &str) -> Result<Stage, String> {
    let (word, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    let rest = rest.trim();
    match word {
        "take" | "limit" => {
            rest.parse::<usize>().map(Stage::Take).map_err(|_| format!("'{s}': take expects a row count"))
        }
        "where" => {
            for op in ["==", "=~", "!="] {
                if let Some((col, val)) = rest.split_once(op) {
                    let col = col.trim();
                    let val = val.trim();
                    let unquoted = val
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .or_else(|| val.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
                    let Some(v) = unquoted else {
                        return Err(format!("'{s}': the value must be a quoted string literal"));
                    };
                    if col.is_empty() || !col.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(format!("'{s}': expected a column name"));
                    }
                    return Ok(Stage::Where { column: col.to_string(), op, value: v.to_string() });
                }
            }
            Err(format!("'{s}': unsupported where clause"))
        }
        _ => Err(format!("operator '{word}' is not supported")),
    }
}

fn schema(table: &str) -> &'static [(&'static str, &'static str)] {
    match table {
        "DeviceInfo" => &[
            ("Timestamp", "DateTime"),
            ("DeviceId", "String"),
            ("DeviceName", "String"),
            ("ClientVersion", "String"),
            ("PublicIP", "String"),
            ("OSArchitecture", "String"),
            ("OSPlatform", "String"),
            ("OSBuild", "Int64"),
            ("IsAzureADJoined", "Boolean"),
            ("AadDeviceId", "String"),
            ("OSVersion", "String"),
            ("MachineGroup", "String"),
            ("ReportId", "Int64"),
            ("OnboardingStatus", "String"),
            ("DeviceCategory", "String"),
            ("DeviceType", "String"),
            ("OSDistribution", "String"),
            ("SensorHealthState", "String"),
            ("ExposureLevel", "String"),
            ("AssetValue", "String"),
            ("DeviceManualTags", "Object"),
        ],
        "DeviceNetworkInfo" => &[
            ("Timestamp", "DateTime"),
            ("DeviceId", "String"),
            ("DeviceName", "String"),
            ("NetworkAdapterName", "String"),
            ("MacAddress", "String"),
            ("NetworkAdapterType", "String"),
            ("NetworkAdapterStatus", "String"),
            ("IPAddresses", "String"),
            ("ReportId", "Int64"),
            ("NetworkAdapterVendor", "String"),
        ],
        _ => &[
            ("DeviceId", "String"),
            ("DeviceName", "String"),
            ("OSPlatform", "String"),
            ("OSVersion", "String"),
            ("OSArchitecture", "String"),
            ("SoftwareVendor", "String"),
            ("SoftwareName", "String"),
            ("SoftwareVersion", "String"),
            ("CveId", "String"),
            ("VulnerabilitySeverityLevel", "String"),
            ("RecommendedSecurityUpdate", "String"),
            ("RecommendedSecurityUpdateId", "String"),
            ("CveTags", "Object"),
        ],
    }
}

fn device_info(m: &Machine) -> Vec<Map<String, Value>> {
    let row = json!({
        "Timestamp": iso7(m.last_seen),
        "DeviceId": m.id,
        "DeviceName": m.computer_dns_name,
        "ClientVersion": m.agent_version,
        "PublicIP": m.last_external_ip_address,
        "OSArchitecture": m.os_architecture,
        "OSPlatform": m.os_platform,
        "OSBuild": m.os_build,
        "IsAzureADJoined": m.is_aad_joined,
        "AadDeviceId": m.aad_device_id,
        "OSVersion": m.version,
        "MachineGroup": m.rbac_group_name.unwrap_or("UnassignedGroup"),
        "ReportId": (m.index as i64) * 7 + 11,
        "OnboardingStatus": m.onboarding_status,
        "DeviceCategory": "Endpoint",
        "DeviceType": match m.group { 0 | 1 | 6 => "Workstation", 2..=5 | 7 | 10 => "Server", _ => "Mobile" },
        "OSDistribution": m.os_distribution,
        "SensorHealthState": m.health_status,
        "ExposureLevel": m.exposure_level,
        "AssetValue": m.device_value,
        "DeviceManualTags": m.machine_tags,
    });
    match row {
        Value::Object(o) => vec![o],
        _ => vec![],
    }
}

fn device_network_info(m: &Machine) -> Vec<Map<String, Value>> {
    let mut adapters: Vec<(Option<&str>, Vec<&super::tenant::IpAddress>)> = Vec::new();
    for ip in &m.ip_addresses {
        let key = ip.mac_address.as_deref();
        match adapters.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(ip),
            None => adapters.push((key, vec![ip])),
        }
    }
    adapters
        .into_iter()
        .enumerate()
        .filter_map(|(i, (mac, ips))| {
            let first = ips[0];
            let ip_json: Vec<Value> = ips
                .iter()
                .map(|ip| {
                    json!({"IPAddress": ip.ip_address, "SubnetPrefix": if ip.ip_address.contains(':') { 64 } else { 24 },
                           "AddressType": if ip.ip_address.starts_with("127.") { "Loopback" } else { "Private" }})
                })
                .collect();
            let hyphen = mac.map(|m| {
                m.as_bytes()
                    .chunks(2)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("-")
            });
            let row = json!({
                "Timestamp": iso7(m.last_seen),
                "DeviceId": m.id,
                "DeviceName": m.computer_dns_name,
                "NetworkAdapterName": match first.kind { "SoftwareLoopback" => "Loopback Pseudo-Interface 1".to_string(), "Wireless80211" => "Wi-Fi".to_string(), _ => format!("Ethernet {}", i + 1) },
                "MacAddress": hyphen,
                "NetworkAdapterType": first.kind,
                "NetworkAdapterStatus": first.operational_status,
                "IPAddresses": Value::Array(ip_json).to_string(),
                "ReportId": (m.index as i64) * 7 + 12 + i as i64,
                "NetworkAdapterVendor": if mac.is_some() { "Intel Corporation" } else { "" },
            });
            match row {
                Value::Object(o) => Some(o),
                _ => None,
            }
        })
        .collect()
}

fn tvm(t: &Tenant, m: &Machine) -> Vec<Map<String, Value>> {
    t.machine_vulnerabilities(m.index as usize)
        .filter_map(|v| {
            let p = &PRODUCTS[v.product as usize];
            let mut tags: Vec<&str> = Vec::new();
            if v.zero_day {
                tags.extend(["ZeroDay", "NoSecurityUpdate"]);
            }
            let row = json!({
                "DeviceId": m.id,
                "DeviceName": m.computer_dns_name,
                "OSPlatform": m.os_platform,
                "OSVersion": m.version,
                "OSArchitecture": if m.os_architecture == "64-bit" { "x64" } else { "x86" },
                "SoftwareVendor": p.vendor,
                "SoftwareName": p.name,
                "SoftwareVersion": t.row_version(m.index as usize, v.index),
                "CveId": v.id,
                "VulnerabilitySeverityLevel": v.severity.as_str(),
                "RecommendedSecurityUpdate": v.recommended_update,
                "RecommendedSecurityUpdateId": v.fixing_kb_id.as_ref().map(|k| format!("KB{k}")).unwrap_or_default(),
                "CveTags": tags,
            });
            match row {
                Value::Object(o) => Some(o),
                _ => None,
            }
        })
        .collect()
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Run a query; `Err` is the 400 message.
pub fn execute(t: &Tenant, query: &str) -> Result<Value, String> {
    let parts = split_pipes(query);
    let table = parts[0].as_str();
    if !matches!(table, "DeviceInfo" | "DeviceNetworkInfo" | "DeviceTvmSoftwareVulnerabilities") {
        return Err(format!(
            "Query could not be parsed: failed to resolve table or column expression named '{table}'. {SUPPORTED}"
        ));
    }
    let stages: Vec<Stage> = parts[1..]
        .iter()
        .map(|s| parse_stage(s))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("Query could not be parsed: {e}. {SUPPORTED}"))?;
    let cols = schema(table);
    for s in &stages {
        if let Stage::Where { column, .. } = s
            && !cols.iter().any(|(c, _)| c == column)
        {
            return Err(format!(
                "Query could not be parsed: failed to resolve column named '{column}' in table {table}"
            ));
        }
    }
    // `where DeviceId == "x"` as the first stage narrows the scan to one machine.
    let machines: Box<dyn Iterator<Item = &Machine>> = match stages.first() {
        Some(Stage::Where { column, op: "==", value }) if column == "DeviceId" => {
            Box::new(t.machine_by_id(value).into_iter())
        }
        _ => Box::new(t.machines().iter()),
    };
    let mut rows: Box<dyn Iterator<Item = Map<String, Value>>> = Box::new(machines.flat_map(move |m| match table {
        "DeviceInfo" => device_info(m),
        "DeviceNetworkInfo" => device_network_info(m),
        _ => tvm(t, m),
    }));
    for s in stages {
        rows = match s {
            Stage::Take(n) => Box::new(rows.take(n)),
            Stage::Where { column, op, value } => Box::new(rows.filter(move |r| {
                let cell = r.get(&column).map(cell_text).unwrap_or_default();
                match op {
                    "==" => cell == value,
                    "=~" => cell.to_lowercase() == value.to_lowercase(),
                    _ => cell != value,
                }
            })),
        };
    }
    let results: Vec<Value> = rows.take(MAX_ROWS).map(Value::Object).collect();
    let schema: Vec<Value> = cols.iter().map(|(n, ty)| json!({"Name": n, "Type": ty})).collect();
    Ok(json!({ "Schema": schema, "Results": results }))
}

pub async fn run_query(st: web::Data<SimState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    serve(&st, &req, Api::AdvancedQuery, |ctx| {
        let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(&body) else {
            return Reply::bad_request("InvalidRequestBody", "The request body is not a valid JSON object");
        };
        let query = match b.get("Query") {
            Some(Value::String(q)) if !q.trim().is_empty() => q.clone(),
            Some(_) => {
                return Reply::bad_request("InvalidRequestBody", "Query must be a non-empty string");
            }
            None => {
                return Reply::bad_request("MissingRequiredParameter", "Parameter 'Query' is missing");
            }
        };
        match execute(ctx.tenant(), &query) {
            Ok(v) => Reply::ok_json(&v),
            Err(msg) => Reply::bad_request("BadRequest", msg),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages() {
        assert_eq!(parse_stage("take 5"), Ok(Stage::Take(5)));
        assert_eq!(
            parse_stage("where DeviceId == \"a|b\""),
            Ok(Stage::Where { column: "DeviceId".into(), op: "==", value: "a|b".into() })
        );
        assert!(parse_stage("summarize count()").is_err());
        assert_eq!(split_pipes("T | where x == 'a|b' | take 1").len(), 3);
    }
}
