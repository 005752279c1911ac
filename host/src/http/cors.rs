//! Which web origins may use presence from a browser (`PRESENCE_CORS_ORIGINS`):
//! the CORS headers of the user REST API, the SDK and the API documents, and
//! the `Origin` check of `/ws` (a WebSocket is not covered by CORS).

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The configured origins: none (no CORS, any `Origin` may open `/ws`),
/// any (`*`), or a list of exact origins.
#[derive(Debug, Clone, Default)]
pub enum Origins {
    #[default]
    Unset,
    Any,
    List(Vec<HeaderValue>),
}

impl Origins {
    pub fn from_config(origins: &[String]) -> anyhow::Result<Origins> {
        if origins.is_empty() {
            return Ok(Origins::Unset);
        }
        if origins.iter().any(|o| o == "*") {
            return Ok(Origins::Any);
        }
        origins
            .iter()
            .map(|o| {
                let ok = (o.starts_with("http://") || o.starts_with("https://"))
                    && !o[o.find("://").unwrap_or(0) + 3..].contains('/');
                anyhow::ensure!(
                    ok,
                    "PRESENCE_CORS_ORIGINS (cors_origins): {o:?} is not an origin like https://chat.example.com"
                );
                Ok(HeaderValue::from_str(o)?)
            })
            .collect::<anyhow::Result<_>>()
            .map(Origins::List)
    }

    /// Whether a browser page of `origin` may open `/ws`; a client that sends
    /// no `Origin` (not a browser) always may, and so may a page served by
    /// this server itself (its origin's host is the request's `Host`).
    pub fn allows_websocket(
        &self,
        origin: Option<&HeaderValue>,
        host: Option<&HeaderValue>,
    ) -> bool {
        match (self, origin) {
            (Origins::Unset | Origins::Any, _) | (_, None) => true,
            (Origins::List(list), Some(o)) => list.contains(o) || same_host(o, host),
        }
    }

    /// The CORS layer for the routes a browser page calls; `None` when unset.
    pub fn layer(&self) -> Option<CorsLayer> {
        let allow = match self {
            Origins::Unset => return None,
            Origins::Any => AllowOrigin::any(),
            Origins::List(list) => AllowOrigin::list(list.clone()),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::PUT])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the `host` header's host.
fn same_host(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(HeaderValue::to_str)) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_and_a_websocket_without_one_is_not_a_browser() {
        let list = Origins::from_config(&["https://chat.example.com".into()]).unwrap();
        let ok = HeaderValue::from_static("https://chat.example.com");
        let other = HeaderValue::from_static("https://evil.example.com");
        let host = HeaderValue::from_static("presence.example.com:8080");
        let own = HeaderValue::from_static("https://presence.example.com:8080");
        assert!(list.allows_websocket(Some(&ok), Some(&host)));
        assert!(!list.allows_websocket(Some(&other), Some(&host)));
        assert!(list.allows_websocket(None, Some(&host)));
        assert!(
            list.allows_websocket(Some(&own), Some(&host)),
            "its own page"
        );
        assert!(!list.allows_websocket(Some(&own), None));
        assert!(
            Origins::from_config(&[])
                .unwrap()
                .allows_websocket(Some(&other), None)
        );
        assert!(matches!(
            Origins::from_config(&["*".into()]).unwrap(),
            Origins::Any
        ));
        for bad in ["chat.example.com", "https://chat.example.com/path"] {
            assert!(Origins::from_config(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
