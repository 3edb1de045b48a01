//! What htmx tells about a request: that htmx sent it (`HX-Request`), for a fragment to swap in
//! place, and whether it is a boosted navigation (`HX-Boosted`), which wants a whole page. One
//! place reads these headers; handlers take [`Htmx`] as an extractor.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};

#[derive(Debug, Clone, Copy)]
pub struct Htmx {
    /// Sent by htmx.
    pub request: bool,
    /// A boosted link or form: htmx swaps the whole body.
    pub boosted: bool,
}

impl Htmx {
    pub fn of(req: &HttpRequest) -> Self {
        let h = req.headers();
        Self { request: h.contains_key("hx-request"), boosted: h.contains_key("hx-boosted") }
    }

    /// The answer should be a fragment for htmx to swap in, not a whole page.
    pub fn wants_fragment(self) -> bool {
        self.request && !self.boosted
    }
}

impl FromRequest for Htmx {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Htmx::of(req)))
    }
}
