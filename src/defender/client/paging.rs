//! Listings: the entities the sync reads, page by page (`$top`/`$skip` or `@odata.nextLink`),
//! with the decoding of pages and of single entities.

use super::*;

impl DefenderClient {
    /// All machines: `GET /api/machines?$top=10000&$skip=k·10000`.
    pub fn machines(&self) -> Pager<Machine> {
        Pager::skip_top(self.clone(), Api::ListMachines, "/api/machines", 10_000, None, false)
    }

    /// All vulnerabilities of the organisation: `GET /api/vulnerabilities`, `$top=8000`.
    pub fn vulnerabilities(&self) -> Pager<Vulnerability> {
        Pager::skip_top(self.clone(), Api::ListVulnerabilities, "/api/vulnerabilities", 8_000, None, true)
    }

    /// Every (machine, CVE, product version) row: the bulk listing
    /// `GET /api/vulnerabilities/machinesVulnerabilities`, `$top=10000`. Chosen over the
    /// export JSON (see docs/defender-client.md): 10,000-row pages keep memory small and the
    /// call count is the minimum for this endpoint (⌈rows/10,000⌉, +1 when rows is a multiple).
    pub fn machine_vulnerabilities(&self) -> Pager<MachineVulnerability> {
        Pager::skip_top(
            self.clone(),
            Api::MachinesVulnerabilities,
            "/api/vulnerabilities/machinesVulnerabilities",
            10_000,
            None,
            false,
        )
    }

    /// The export-assessment JSON (`GET /api/machines/SoftwareVulnerabilitiesByMachine`)
    /// with `pageSize` = [`ClientOptions::export_page_size`], following `@odata.nextLink`
    /// (only to the configured API host). 30 calls/min, 1,000/h.
    pub fn export_machine_vulnerabilities(&self) -> Pager<ExportVulnerability> {
        let size = self.inner.options.export_page_size.clamp(1, 200_000);
        Pager::next_link(
            self.clone(),
            Api::ExportAssessmentJson,
            "/api/machines/SoftwareVulnerabilitiesByMachine",
            &format!("pageSize={size}"),
        )
    }

    /// The delta export (`GET /api/machines/SoftwareVulnerabilityChangesByMachine`): the
    /// machine×vulnerability rows that changed since `since` (at most 14 days back), each with
    /// `status` New, Fixed or Updated; `pageSize` as the export. 30 calls/min, 1,000/h.
    pub fn export_machine_vulnerability_changes(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Pager<ExportVulnerability> {
        let size = self.inner.options.export_page_size.clamp(1, 200_000);
        let since = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Pager::next_link(
            self.clone(),
            Api::ExportAssessmentDelta,
            "/api/machines/SoftwareVulnerabilityChangesByMachine",
            &format!("sinceTime={since}&pageSize={size}"),
        )
    }

    /// Every machine action of one type in the tenant (`Isolate`, `Unisolate`, …):
    /// `GET /api/machineactions?$filter=type eq '{kind}'`, `$top=10000` (the documented maximum;
    /// `type` is a documented filter, and `or` between conditions is not, hence one listing per
    /// type). <https://learn.microsoft.com/en-us/defender-endpoint/api/get-machineactions-collection>
    pub fn machine_actions_of_type(&self, kind: &'static str) -> Pager<MachineAction> {
        Pager::skip_top(self.clone(), Api::ListMachineActions, "/api/machineactions", 10_000, None, false)
            .with_filter(&format!("type eq '{kind}'"))
    }

    /// All alerts: `GET /api/alerts`, `$top=10000`.
    pub fn alerts(&self) -> Pager<Alert> {
        Pager::skip_top(self.clone(), Api::ListAlerts, "/api/alerts", 10_000, None, false)
    }
}

// -------------------------------------------------------------------- decoding

pub(crate) struct PageBody<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next_link: Option<String>,
}

#[derive(serde::Deserialize)]
struct RawPage<T> {
    value: Option<Vec<T>>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

fn syntax_error(api: Api, e: &serde_json::Error) -> DefenderError {
    DefenderError::BadResponse(format!("{api}: malformed or truncated JSON at line {} column {}", e.line(), e.column()))
}

/// Decode a collection page; on a type error, say which record and field. Also a fuzz target
/// (`crate::fuzz::defender_json`).
pub(crate) fn decode_page<T: DeserializeOwned + HasId>(api: Api, body: &[u8]) -> Result<PageBody<T>, DefenderError> {
    match serde_json::from_slice::<RawPage<T>>(body) {
        Ok(p) => {
            let items = p
                .value
                .ok_or_else(|| DefenderError::BadResponse(format!("{api}: the answer has no \"value\" array")))?;
            if let Some(i) = items.iter().position(|it| it.id().is_empty()) {
                return Err(DefenderError::BadResponse(format!("{api}: record {i} has no field `id`")));
            }
            Ok(PageBody { items, next_link: p.next_link })
        }
        Err(e) if e.is_data() => Err(locate_type_error::<T>(api, body, &e)),
        Err(e) => Err(syntax_error(api, &e)),
    }
}

pub(crate) fn decode_entity<T: DeserializeOwned>(api: Api, body: &[u8]) -> Result<T, DefenderError> {
    match serde_json::from_slice::<T>(body) {
        Ok(t) => Ok(t),
        Err(e) if e.is_data() => {
            let v: Value = serde_json::from_slice(body).map_err(|e| syntax_error(api, &e))?;
            Err(DefenderError::BadResponse(format!(
                "{api}: {}",
                field_error::<T>(&v).unwrap_or_else(|| excerpt(&e.to_string(), 200))
            )))
        }
        Err(e) => Err(syntax_error(api, &e)),
    }
}

/// Which field of an object fails to deserialize as `T` (all fields of the DTOs are
/// optional, so an object with just that field reproduces the error).
fn field_error<T: DeserializeOwned>(v: &Value) -> Option<String> {
    let obj = v.as_object()?;
    for (k, val) in obj {
        let mut one = serde_json::Map::new();
        one.insert(k.clone(), val.clone());
        if let Err(e) = serde_json::from_value::<T>(Value::Object(one)) {
            return Some(format!("field `{}`: {}", excerpt(k, 60), excerpt(&e.to_string(), 160)));
        }
    }
    None
}

fn locate_type_error<T: DeserializeOwned>(api: Api, body: &[u8], e: &serde_json::Error) -> DefenderError {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return syntax_error(api, e);
    };
    let Some(items) = v.get("value").and_then(Value::as_array) else {
        return DefenderError::BadResponse(format!("{api}: the answer has no \"value\" array of records"));
    };
    for (i, item) in items.iter().enumerate() {
        if serde_json::from_value::<T>(item.clone()).is_err() {
            let id = item.get("id").map(|v| excerpt(&v.to_string(), 80)).unwrap_or_else(|| "?".into());
            let what = field_error::<T>(item).unwrap_or_else(|| "not an object".into());
            return DefenderError::BadResponse(format!("{api}: record {i} (id {id}): {what}"));
        }
    }
    DefenderError::BadResponse(format!("{api}: {}", excerpt(&e.to_string(), 200)))
}

// -------------------------------------------------------------------- paging

enum Mode {
    /// `$top`/`$skip`.
    SkipTop { top: usize, skip: usize, filter: Option<String> },
    /// Follow `@odata.nextLink`.
    NextLink { next: Option<Url>, visited: HashSet<String> },
}

/// Pages of a listing. Call [`Pager::next_page`] until it returns `Ok(None)`.
///
/// Duplicates: an item whose id was already returned (by the whole listing for the
/// vulnerability catalog, whose size does not follow the tenant's; by the previous page for
/// the listings that do — machines, alerts, machine × vulnerability rows — so that memory stays
/// bounded) is dropped and counted in [`Pager::duplicates_dropped`]. An inventory that changes
/// while it is listed shifts `$skip` pages by a few items, which repeats them on the next page;
/// the sync's staging tables keep one of each id across the whole listing in any case. A
/// non-empty page made only of such items is a paging loop (`PagingLoop`).
pub struct Pager<T> {
    client: DefenderClient,
    api: Api,
    path: &'static str,
    extra_query: String,
    mode: Mode,
    done: bool,
    pages: usize,
    /// All ids so far (`Some`) or only the previous page's.
    seen_all: Option<HashSet<String>>,
    previous: HashSet<String>,
    duplicates: u64,
    items: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + HasId> Pager<T> {
    fn skip_top(
        client: DefenderClient,
        api: Api,
        path: &'static str,
        top: usize,
        filter: Option<String>,
        dedupe_all: bool,
    ) -> Self {
        Pager {
            client,
            api,
            path,
            extra_query: String::new(),
            mode: Mode::SkipTop { top, skip: 0, filter },
            done: false,
            pages: 0,
            seen_all: dedupe_all.then(HashSet::new),
            previous: HashSet::new(),
            duplicates: 0,
            items: 0,
            _t: PhantomData,
        }
    }

    fn next_link(client: DefenderClient, api: Api, path: &'static str, query: &str) -> Self {
        Pager {
            client,
            api,
            path,
            extra_query: query.to_string(),
            mode: Mode::NextLink { next: None, visited: HashSet::new() },
            done: false,
            pages: 0,
            seen_all: None,
            previous: HashSet::new(),
            duplicates: 0,
            items: 0,
            _t: PhantomData,
        }
    }

    /// Restrict the listing with an OData `$filter` (`$top`/`$skip` listings only; the
    /// expression is sent as given, percent-encoded).
    pub fn with_filter(mut self, filter: &str) -> Self {
        if let Mode::SkipTop { filter: f, .. } = &mut self.mode {
            *f = Some(filter.to_string());
        }
        self
    }

    /// Pages fetched so far.
    pub fn pages(&self) -> usize {
        self.pages
    }
    /// Items returned so far (after de-duplication).
    pub fn items(&self) -> u64 {
        self.items
    }
    /// Items dropped because their id was already returned.
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates
    }

    /// The next page, `Ok(None)` at the end. After an error the pager is finished.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, DefenderError> {
        if self.done {
            return Ok(None);
        }
        let r = self.fetch().await;
        if r.is_err() {
            self.done = true;
        }
        r
    }

    /// Every remaining item (convenience for small listings and tests).
    pub async fn collect_all(mut self) -> Result<Vec<T>, DefenderError> {
        let mut all = Vec::new();
        while let Some(p) = self.next_page().await? {
            all.extend(p);
        }
        Ok(all)
    }

    async fn fetch(&mut self) -> Result<Option<Vec<T>>, DefenderError> {
        let max_pages = self.client.inner.options.max_pages;
        if self.pages >= max_pages {
            return Err(DefenderError::PageLimit(max_pages));
        }
        let target = &self.client.inner.target;
        let url = match &mut self.mode {
            Mode::SkipTop { top, skip, filter } => {
                let mut q = String::new();
                if let Some(f) = filter {
                    q.push_str("$filter=");
                    q.push_str(&encode_query_value(f));
                    q.push('&');
                }
                q.push_str(&format!("$top={top}&$skip={skip}"));
                target.api_url(self.path, &q)?
            }
            Mode::NextLink { next, visited } => {
                let url = match next.take() {
                    Some(u) => u,
                    None => target.api_url(self.path, &self.extra_query)?,
                };
                if !visited.insert(url.as_str().to_string()) {
                    return Err(DefenderError::PagingLoop);
                }
                url
            }
        };
        let answer = self.client.request(self.api, Method::GET, url, None, true).await;
        let answer = match answer {
            Ok(a) => a,
            // Documented for the machine listing ("404 Not Found if no machines were found",
            // https://learn.microsoft.com/en-us/defender-endpoint/api/get-machines), and so taken
            // for the listings of a machine's own records: as the whole answer only. A later
            // page, or a vulnerability listing or export, answering 404 is a failure: taking it
            // for the end emptied every machine's CVEs (and moved the delta cursor past them).
            Err(DefenderError::NotFound) if self.pages == 0 && self.api.may_answer_none_with_404() => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let page = decode_page::<T>(self.api, &answer.body)?;
        self.pages += 1;
        let raw = page.items.len();
        // Validate any link before anything else: a foreign link is refused, never fetched.
        let link = match page.next_link.as_deref().map(str::trim) {
            Some(l) if !l.is_empty() => {
                let u = Url::parse(l)
                    .map_err(|_| DefenderError::BadResponse(format!("{}: @odata.nextLink is not a URL", self.api)))?;
                if !target.same_origin(&u) {
                    let host = match (u.host_str(), u.port()) {
                        (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
                        (Some(h), None) => format!("{}://{h}", u.scheme()),
                        _ => u.scheme().to_string(),
                    };
                    return Err(DefenderError::ForeignHost(excerpt(&host, 200)));
                }
                Some(u)
            }
            _ => None,
        };
        // De-duplicate and detect loops.
        let ids: HashSet<String> = page.items.iter().map(|i| i.record_key().into_owned()).collect();
        let mut kept = Vec::with_capacity(raw);
        let mut repeated = 0usize;
        let mut this_page: HashSet<String> = HashSet::with_capacity(raw);
        for it in page.items {
            let key = it.record_key();
            let id = key.as_ref();
            let dup = self.previous.contains(id)
                || self.seen_all.as_ref().is_some_and(|s| s.contains(id))
                || !this_page.insert(id.to_string());
            if dup {
                repeated += 1;
                continue;
            }
            kept.push(it);
        }
        if raw > 0 && repeated == raw {
            return Err(DefenderError::PagingLoop);
        }
        self.duplicates += repeated as u64;
        if let Some(all) = self.seen_all.as_mut() {
            all.extend(ids.iter().cloned());
        }
        self.previous = ids;
        self.items += kept.len() as u64;
        match &mut self.mode {
            Mode::SkipTop { top, skip, .. } => {
                if raw < *top {
                    self.done = true;
                } else {
                    *skip += *top;
                }
            }
            Mode::NextLink { next, .. } => match link {
                Some(u) if raw > 0 => *next = Some(u),
                Some(_) => return Err(DefenderError::PagingLoop),
                None => self.done = true,
            },
        }
        if kept.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(kept))
    }
}

/// Percent-encode an OData query value (spaces as `%20`, quotes as `%27`).
pub(super) fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'(' | b')' | b',' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
