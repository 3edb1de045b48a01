//! Investigation packages: `GET /api/machineactions/{id}/GetPackageUri` and the short-lived,
//! signed link it answers, which serves a small zip file.
//!
//! As Microsoft documents it (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri>):
//! * "Get a URI that allows downloading of an Investigation package"; application permission
//!   `Machine.Read.All` or `Machine.ReadWrite.All`; "2 calls per minute and 120 calls per hour"
//!   (both in `api.rs`, `Api::GetPackageUri`).
//! * "If successful, this method returns 200, Ok response code with object that holds the link to
//!   the package in the "value" parameter. This link is valid for a short time and should be used
//!   immediately": the simulator's link lives `SimConfig::package_link_secs` (10 minutes by
//!   default; Microsoft gives no lifetime).
//! * "If the machine action for the collection exists but isn't complete, this returns 404 Not
//!   Found." The error code is not documented; the simulator answers `ResourceNotFound`, as for
//!   an unknown action, and the same for a collection that failed or an action that collected
//!   nothing (neither is documented).
//! * The example's `@odata.context` ends in `#Edm.String`, and its `value` holds the URL inside
//!   escaped double quotes (`"\"https://…\""`): the simulator answers the same, so a client must
//!   strip them.
//! * The example path writes `GetPackageUri`, the request line `getPackageUri`: both are routed.
//!
//! The package's contents follow the Windows table of "Take response actions on a device"
//! (<https://learn.microsoft.com/en-us/defender-endpoint/respond-machine-alerts>) in name only: a
//! `CollectionSummaryReport` and a `SystemInformation.txt` that say what was collected, when, why.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Duration;

use super::actions::ActionType;
use super::api::{Api, Reply, serve};
use super::export::{blob_error, check_signed, signed_link};
use super::ids::is_guid;
use super::views::iso7;
use super::{SimState, lock};

/// The file name in Microsoft's example link.
pub const PACKAGE_FILE: &str = "WDATP_Investigation_Package.zip";

pub fn configure_files(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/_sim/blob/investigation-package/{id}/{file}")
            .route(web::get().to(download))
            .default_service(web::to(super::api::method_not_allowed_get)),
    );
}

fn blob_path(action_id: &str) -> String {
    format!("/_sim/blob/investigation-package/{action_id}/{PACKAGE_FILE}")
}

pub async fn get_package_uri(st: web::Data<SimState>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    serve(&st, &req, Api::GetPackageUri, |ctx| {
        if !is_guid(&id) {
            return Reply::bad_request(
                "BadRequest",
                format!(
                    "The key value ({id}) from request is not valid. The key value should be format of type 'Edm.Guid'."
                ),
            );
        }
        let store = lock(&ctx.st.actions);
        let Some(a) = store.get(&id) else {
            return Reply::not_found(format!("Machine action {id} was not found"));
        };
        if a.kind != ActionType::CollectInvestigationPackage {
            return Reply::not_found(format!("Machine action {id} did not collect an investigation package"));
        }
        match a.status_at(ctx.now).0 {
            "Succeeded" => {}
            "Pending" | "InProgress" => {
                return Reply::not_found(format!("The investigation package of machine action {id} is not ready yet"));
            }
            other => {
                return Reply::not_found(format!(
                    "Machine action {id} ended {other}: there is no investigation package"
                ));
            }
        }
        let expiry = (ctx.now + Duration::seconds(ctx.st.config.package_link_secs as i64))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let link = signed_link(ctx, &blob_path(&a.id), &expiry);
        Reply::ok_json(&serde_json::json!({
            "@odata.context": ctx.context("Edm.String"),
            // As in Microsoft's example: the URL in escaped double quotes.
            "value": format!("\"{link}\""),
        }))
    })
    .await
}

async fn download(st: web::Data<SimState>, req: HttpRequest, path: web::Path<(String, String)>) -> HttpResponse {
    serve(&st, &req, Api::PackageFile, |ctx| {
        let (id, file) = path.into_inner();
        if let Err(refused) = check_signed(ctx, &format!("/_sim/blob/investigation-package/{id}/{file}")) {
            return refused;
        }
        let store = lock(&ctx.st.actions);
        let Some(a) = store.get(&id).filter(|a| file == PACKAGE_FILE && a.status_at(ctx.now).0 == "Succeeded") else {
            return blob_error(StatusCode::NOT_FOUND, "BlobNotFound", "The specified blob does not exist.");
        };
        let collected = iso7(a.status_at(ctx.now).1);
        let info = format!(
            "Host Name: {}\r\nMachine Id: {}\r\nCollected: {collected}\r\nRequested by: {}\r\nComment: {}\r\n",
            a.computer_dns_name, a.machine_id, a.requestor, a.comment
        );
        let summary = format!(
            "Data point\tCommand\tStatus\r\nSystem Information\tsysteminfo\tSucceeded\r\nCollected\t\t{collected}\r\n"
        );
        let body = zip(&[
            ("System Information/SystemInformation.txt", info.as_bytes()),
            ("CollectionSummaryReport.xls", summary.as_bytes()),
        ]);
        Reply {
            status: StatusCode::OK,
            content_type: "application/zip",
            headers: vec![
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{PACKAGE_FILE}\"")),
                (header::HeaderName::from_static("x-ms-blob-type"), "BlockBlob".into()),
            ],
            body,
        }
    })
    .await
}

/// A zip archive of `files`, stored without compression (APPNOTE.TXT 4.3: local headers, the
/// central directory, its end record).
fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    let u16le = |v: &mut Vec<u8>, n: u16| v.extend_from_slice(&n.to_le_bytes());
    let u32le = |v: &mut Vec<u8>, n: u32| v.extend_from_slice(&n.to_le_bytes());
    // 2026-01-01 00:00 in MS-DOS date and time.
    let (time, date) = (0u16, ((2026 - 1980) << 9 | 1 << 5 | 1) as u16);
    for (name, data) in files {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let (crc, size, offset) = (crc.sum(), data.len() as u32, out.len() as u32);
        for (v, signature) in [(&mut out, 0x0403_4b50u32), (&mut central, 0x0201_4b50)] {
            u32le(v, signature);
            if signature == 0x0201_4b50 {
                u16le(v, 20); // version made by
            }
            for n in [20, 0, 0, time, date] {
                u16le(v, n); // version needed, flags, method (stored), time, date
            }
            for n in [crc, size, size] {
                u32le(v, n);
            }
            u16le(v, name.len() as u16);
            u16le(v, 0); // extra field
            if signature == 0x0201_4b50 {
                for n in [0, 0, 0] {
                    u16le(v, n); // comment, disk, internal attributes
                }
                u32le(v, 0); // external attributes
                u32le(v, offset);
            }
            v.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(data);
    }
    let (cd_offset, cd_size) = (out.len() as u32, central.len() as u32);
    out.extend_from_slice(&central);
    u32le(&mut out, 0x0605_4b50);
    for n in [0, 0, files.len() as u16, files.len() as u16] {
        u16le(&mut out, n);
    }
    u32le(&mut out, cd_size);
    u32le(&mut out, cd_offset);
    u16le(&mut out, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zip_has_its_records_where_they_belong() {
        let z = zip(&[("a.txt", b"hello"), ("b/c.txt", b"")]);
        assert_eq!(&z[..4], b"PK\x03\x04");
        let end = z.len() - 22;
        assert_eq!(&z[end..end + 4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes([z[end + 10], z[end + 11]]), 2, "two entries");
        let cd = u32::from_le_bytes(z[end + 16..end + 20].try_into().unwrap()) as usize;
        assert_eq!(&z[cd..cd + 4], b"PK\x01\x02");
        // CRC-32 of "hello" (as any zip tool computes it).
        assert_eq!(u32::from_le_bytes(z[14..18].try_into().unwrap()), 0x3610_a686);
        assert_eq!(&z[30..35], b"a.txt");
        assert_eq!(&z[35..40], b"hello");
    }
}
