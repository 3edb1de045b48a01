//! Machine actions: isolate, release, scan, restrict and unrestrict app execution, collect an
//! investigation package and get its download link, reading actions back, and adding or
//! removing one machine tag.

use super::*;

/// How to isolate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsolationType {
    Full,
    Selective,
    /// "Contain device" for unmanaged (discovered, not onboarded) devices.
    UnManagedDevice,
}

impl IsolationType {
    pub fn as_str(self) -> &'static str {
        match self {
            IsolationType::Full => "Full",
            IsolationType::Selective => "Selective",
            IsolationType::UnManagedDevice => "UnManagedDevice",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [IsolationType::Full, IsolationType::Selective, IsolationType::UnManagedDevice]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Antivirus scan kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanType {
    Quick,
    Full,
}

impl ScanType {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanType::Quick => "Quick",
            ScanType::Full => "Full",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [ScanType::Quick, ScanType::Full].into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl DefenderClient {
    async fn action(
        &self,
        api: Api,
        machine_id: &str,
        verb: &str,
        body: Value,
    ) -> Result<MachineAction, DefenderError> {
        let url = self.inner.target.api_url(&format!("/api/machines/{machine_id}/{verb}"), "")?;
        let a = self.request(api, Method::POST, url, Some(&body), false).await?;
        if a.status != StatusCode::CREATED && a.status != StatusCode::OK {
            tracing::debug!(status = a.status.as_u16(), "unexpected success status for an action");
        }
        let action = MachineAction { clock_offset: a.clock_offset, ..decode_entity(api, &a.body)? };
        if action.id.is_empty() {
            return Err(DefenderError::BadResponse(format!("{api}: the machine action has no id")));
        }
        Ok(action)
    }

    /// `POST /api/machines/{id}/isolate` `{Comment, IsolationType}` → the new (Pending) action.
    /// Sent exactly once unless the service refused it with 429 (or a connection could not be
    /// made); 5xx and timeouts are not retried (the action may have been created).
    pub async fn isolate(
        &self,
        machine_id: &str,
        comment: &str,
        kind: IsolationType,
    ) -> Result<MachineAction, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let c = check_comment(comment)?;
        self.action(Api::Isolate, id, "isolate", serde_json::json!({"Comment": c, "IsolationType": kind.as_str()}))
            .await
    }

    /// `POST /api/machines/{id}/unisolate` `{Comment}`.
    pub async fn unisolate(&self, machine_id: &str, comment: &str) -> Result<MachineAction, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let c = check_comment(comment)?;
        self.action(Api::Unisolate, id, "unisolate", serde_json::json!({"Comment": c})).await
    }

    /// `POST /api/machines/{id}/runAntiVirusScan` `{Comment, ScanType}`.
    pub async fn run_av_scan(
        &self,
        machine_id: &str,
        comment: &str,
        kind: ScanType,
    ) -> Result<MachineAction, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let c = check_comment(comment)?;
        self.action(
            Api::RunAntiVirusScan,
            id,
            "runAntiVirusScan",
            serde_json::json!({"Comment": c, "ScanType": kind.as_str()}),
        )
        .await
    }

    /// `POST /api/machines/{id}/restrictCodeExecution` `{Comment}`
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/restrict-code-execution>).
    pub async fn restrict_code_execution(
        &self,
        machine_id: &str,
        comment: &str,
    ) -> Result<MachineAction, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let c = check_comment(comment)?;
        self.action(Api::RestrictCodeExecution, id, "restrictCodeExecution", serde_json::json!({"Comment": c})).await
    }

    /// `POST /api/machines/{id}/unrestrictCodeExecution` `{Comment}`
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/unrestrict-code-execution>).
    pub async fn unrestrict_code_execution(
        &self,
        machine_id: &str,
        comment: &str,
    ) -> Result<MachineAction, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let c = check_comment(comment)?;
        self.action(Api::UnrestrictCodeExecution, id, "unrestrictCodeExecution", serde_json::json!({"Comment": c}))
            .await
    }

    /// `POST /api/machines/{id}/collectInvestigationPackage` `{Comment}`
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/collect-investigation-package>).
    pub async fn collect_investigation_package(
        &self,
        machine_id: &str,
        comment: &str,
    ) -> Result<MachineAction, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let c = check_comment(comment)?;
        self.action(
            Api::CollectInvestigationPackage,
            id,
            "collectInvestigationPackage",
            serde_json::json!({"Comment": c}),
        )
        .await
    }

    /// `GET /api/machineactions/{id}/GetPackageUri`: the short-lived link to the investigation
    /// package a succeeded collection gathered
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri>). Defender
    /// answers 404 ([`DefenderError::NotFound`]) while the collection is not complete. The link is
    /// a capability: it is returned to the caller and never logged, nor put into an error.
    pub async fn package_uri(&self, action_id: &str) -> Result<Url, DefenderError> {
        let id = action_id.trim();
        if !is_guid(id) {
            return Err(DefenderError::InvalidArgument("Not a machine action id (expected a GUID).".into()));
        }
        let url = self.inner.target.api_url(&format!("/api/machineactions/{id}/GetPackageUri"), "")?;
        #[derive(serde::Deserialize)]
        struct Value {
            value: String,
        }
        let v: Value = self.get_json(Api::GetPackageUri, url).await?;
        self.package_link(&v.value)
    }

    /// The link in GetPackageUri's `value`: Microsoft's example wraps it in escaped double quotes,
    /// which are taken off. Only an absolute http(s) URL without credentials is accepted (https,
    /// or http when the API itself is reached over http, as the simulator is): the product sends
    /// a person's browser there.
    pub(super) fn package_link(&self, value: &str) -> Result<Url, DefenderError> {
        let raw = value.trim();
        let raw = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(raw).trim();
        let bad =
            || DefenderError::BadResponse(format!("{}: the package link is not an http(s) URL", Api::GetPackageUri));
        let link = Url::parse(raw).map_err(|_| bad())?;
        let scheme_ok =
            link.scheme() == "https" || (link.scheme() == "http" && self.inner.target.api_base_url.scheme() == "http");
        if !scheme_ok || link.host_str().is_none() || !link.username().is_empty() || link.password().is_some() {
            return Err(bad());
        }
        Ok(link)
    }

    /// `POST /api/machines/{id}/tags` `{Value, Action: "Add"}`: adds one tag, leaving the
    /// machine's other tags as they are
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags>).
    /// Answers the machine's tags after the call. Adding a tag twice changes nothing, so the call
    /// is retried like a read (5xx, timeouts, 429).
    pub async fn add_machine_tag(&self, machine_id: &str, tag: &str) -> Result<Vec<String>, DefenderError> {
        self.machine_tag(machine_id, tag, "Add").await
    }

    /// `POST /api/machines/{id}/tags` `{Value, Action: "Remove"}`: removes that one tag.
    pub async fn remove_machine_tag(&self, machine_id: &str, tag: &str) -> Result<Vec<String>, DefenderError> {
        self.machine_tag(machine_id, tag, "Remove").await
    }

    /// The machine's tags as Defender has them now, all of them: `GET /api/machines/{id}`
    /// (<https://learn.microsoft.com/en-us/defender-endpoint/api/get-machine-by-id>, 100 calls a
    /// minute and 1,500 an hour). Asked just before adding a tag, so that one a person put there
    /// since the last sync is not taken for ours.
    pub async fn machine_tags_now(&self, machine_id: &str) -> Result<Vec<String>, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let url = self.inner.target.api_url(&format!("/api/machines/{id}"), "")?;
        let machine: Machine = self.get_json(Api::GetMachine, url).await?;
        Ok(machine.machine_tags)
    }

    async fn machine_tag(&self, machine_id: &str, tag: &str, action: &str) -> Result<Vec<String>, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let tag = crate::domain::tag::check(tag).map_err(DefenderError::InvalidArgument)?;
        let url = self.inner.target.api_url(&format!("/api/machines/{id}/tags"), "")?;
        let body = serde_json::json!({"Value": tag, "Action": action});
        let a = self.request(Api::MachineTags, Method::POST, url, Some(&body), true).await?;
        let machine: Machine = decode_entity(Api::MachineTags, &a.body)?;
        Ok(machine.machine_tags)
    }

    /// `GET /api/machineactions/{id}` (the id must be a GUID).
    pub async fn machine_action(&self, action_id: &str) -> Result<MachineAction, DefenderError> {
        let id = action_id.trim();
        if !is_guid(id) {
            return Err(DefenderError::InvalidArgument("Not a machine action id (expected a GUID).".into()));
        }
        let url = self.inner.target.api_url(&format!("/api/machineactions/{id}"), "")?;
        self.get_json(Api::GetMachineAction, url).await
    }

    /// The machine's actions, newest first (one call:
    /// `GET /api/machineactions?$filter=machineId eq '{id}'&$top=10000`).
    pub async fn machine_actions(&self, machine_id: &str) -> Result<Vec<MachineAction>, DefenderError> {
        let id = check_machine_id(machine_id)?;
        let query = format!("$filter=machineId%20eq%20%27{id}%27&$top=10000");
        let url = self.inner.target.api_url("/api/machineactions", &query)?;
        let a = match self.request(Api::ListMachineActions, Method::GET, url, None, true).await {
            Ok(a) => a,
            Err(DefenderError::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut items = decode_page::<MachineAction>(Api::ListMachineActions, &a.body)?.items;
        for item in &mut items {
            item.clock_offset = a.clock_offset;
        }
        items.sort_by_key(|a| std::cmp::Reverse(a.creation_date_time_utc));
        Ok(items)
    }
}
