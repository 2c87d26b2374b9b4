//! Firebreak's HTTP surface: the axum router under `/api/v1`, extractors, the error envelope,
//! the generated OpenAPI document and its browsable docs. Knows HTTP; decides nothing itself:
//! every decision is a call into `firebreak_app`.
#![forbid(unsafe_code)]

mod accept;
pub mod automation;
pub mod error;
pub mod extract;
pub mod imap;
pub mod intake;
pub mod limits;
pub mod mail;
pub mod metrics;
pub mod oidc;
pub mod outbound;
mod routes;
pub mod syslog;
pub mod tls;
pub mod ui;
pub mod web;
pub mod webhook;

pub use accept::HttpLimits;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use error::ApiError;
use firebreak_app::App;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub web: web::WebConfig,
    /// Unauthenticated requests per address.
    pub unauthenticated: std::sync::Arc<limits::AddrLimiter>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Firebreak API", description = "Security incident management and response. Errors are always `{\"error\": {\"code\", \"message\", \"details\"}}`; lists are `{\"items\", \"next_cursor\"}`."),
    modifiers(&BearerAuth),
    tags(
        (name = "tickets", description = "Help-desk tickets"),
        (name = "events", description = "Reported events: the help desk's queue, dismissal, tickets and merges, suppression rules"),
        (name = "intake", description = "Intake endpoints in the formats tools already send (Alertmanager, TheHive, Splunk HEC, NDJSON, webhooks, email)"),
        (name = "observables", description = "IPs, domains, URLs, hashes... extracted from events and tickets"),
        (name = "search", description = "One search over the tickets, events and observables the caller may see"),
        (name = "workflow", description = "Ticket state transitions"),
        (name = "incident log", description = "The per-ticket, hash-chained timeline"),
                (name = "emergencies", description = "Emergency response: coordinator, team, meetings and minutes, status reports, course of action, notifications"),
        (name = "assets", description = "The asset inventory and the assets tickets affect"),
        (name = "plan", description = "The response plan: roster, protocols, thresholds, war rooms, contacts (versioned)"),
        (name = "reports", description = "Written controls generated from the records (Markdown, HTML, PDF)"),
        (name = "change controls", description = "Change requests on tickets, with the two-person rule"),
        (name = "documents", description = "Evidence and documents: encrypted, content-addressed, with chain of custody"),
        (name = "auth", description = "Sign-in sessions, password, second factor"),
        (name = "users", description = "Users"),
        (name = "system", description = "Health and readiness"),
        (name = "automation", description = "Playbooks (YAML, versioned) and their durable runs, approvals, intel connectors, the local indicator store"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every operation can answer with the error envelope for these, whatever it documents.
fn add_common_errors(openapi: &mut utoipa::openapi::OpenApi) {
    let common: &[(&str, &str)] = &[
        ("400", "Malformed JSON or query"),
        ("401", "No valid token"),
        ("403", "Not allowed for this role or token"),
        ("404", "No such resource, or not visible to the caller"),
        ("405", "Method not allowed on this path"),
        ("409", "Not possible in the current state"),
        ("413", "Body too large"),
        ("415", "Body is not JSON"),
        ("422", "Invalid field (named in details)"),
        ("429", "Too many requests; retry after Retry-After"),
        ("503", "Database unavailable; retry after Retry-After"),
        ("507", "Storage full; nothing was written"),
    ];
    for (path, item) in openapi.paths.paths.iter_mut() {
        // compatibility endpoints answer errors in their peer product's shape (TheHive's
        // `{type, message}`, Splunk's `{text, code}`), not in Firebreak's envelope
        let peer_shaped =
            path.starts_with("/services/collector") || routes::thehive::is_thehive_path(path);
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            for (code, desc) in common {
                if !op.responses.responses.contains_key(*code) {
                    let content = if peer_shaped {
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(
                                utoipa::openapi::ObjectBuilder::new()
                                    .schema_type(utoipa::openapi::schema::Type::Object),
                            ))
                            .build()
                    } else {
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name(
                                "ErrorEnvelope",
                            )))
                            .build()
                    };
                    let resp = utoipa::openapi::ResponseBuilder::new()
                        .description(*desc)
                        .content("application/json", content)
                        .build();
                    op.responses
                        .responses
                        .insert((*code).to_string(), resp.into());
                }
            }
        }
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) =
        api_router(firebreak_app::AppConfig::default().max_document_bytes).split_for_parts();
    add_common_errors(&mut api);
    api
}

fn api_router(max_document_bytes: u64) -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(routes::tickets::router())
        .merge(routes::documents::router(max_document_bytes))
        .merge(routes::auth::router())
        .merge(routes::response::router())
        .merge(routes::plan::router())
        .merge(routes::users::router())
        .merge(routes::events::router())
        .merge(routes::ingest::router())
        .merge(routes::thehive::router())
        .merge(routes::automation::router())
        .merge(routes::search::router());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .merge(routes::ingest::root_router())
        .merge(routes::thehive::root_router())
        .routes(utoipa_axum::routes!(routes::system::healthz))
        .routes(utoipa_axum::routes!(routes::system::readyz))
}

/// Content codings are case-insensitive (RFC 9110 8.4.1): `Content-Encoding: GZIP` is gzip.
async fn content_coding_lowercase(mut req: Request<axum::body::Body>) -> Request<axum::body::Body> {
    if let Some(v) = req.headers().get(header::CONTENT_ENCODING)
        && let Ok(text) = v.to_str()
        && text.bytes().any(|b| b.is_ascii_uppercase())
        && let Ok(lower) = HeaderValue::from_str(&text.to_ascii_lowercase())
    {
        req.headers_mut().insert(header::CONTENT_ENCODING, lower);
    }
    req
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this path",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the request id identifies it in the server log",
    )
    .into_response()
}

/// Last-resort mapping: an error response that some layer produced without a body (timeouts,
/// limits, extractor rejections outside our extractors) still gets the JSON envelope.
async fn ensure_envelope(res: Response) -> Response {
    let status = res.status();
    // our own JSON envelopes and HTML error pages (sign-in form) stay as they are
    let ours = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || ours {
        return res;
    }
    let (code, message) = match status {
        StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the body is too large"),
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this method is not allowed on this path",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "unsupported content type")
        }
        s if s.is_server_error() => (
            "internal",
            "internal error; the request id identifies it in the server log",
        ),
        _ => ("bad_request", "the request could not be processed"),
    };
    let mut out = ApiError::new(status, code, message).into_response();
    // `hx-redirect`: a page's own refresh whose session ended goes to the sign-in page
    for name in [
        header::RETRY_AFTER,
        header::WWW_AUTHENTICATE,
        header::ALLOW,
        HeaderName::from_static("hx-redirect"),
    ] {
        if let Some(v) = res.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// A failed response in the log: a 503 is load shed on purpose (intake refusals are counted by
/// `firebreak_intake_shed_total`; storage and readiness 503s are logged where they are raised),
/// logged at debug so an overload does not flood the log with one error per refused request;
/// any other failure at error.
fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass as C;
    let ms = latency.as_millis() as u64;
    match class {
        C::StatusCode(code) if code == StatusCode::SERVICE_UNAVAILABLE => {
            tracing::debug!(latency_ms = ms, "refused: 503 Service Unavailable")
        }
        other => tracing::error!(classification = %other, latency_ms = ms, "response failed"),
    }
}

/// The whole HTTP application, for a plain-HTTP loopback deployment.
pub fn router(app: App) -> Router {
    router_with(app, web::WebConfig::default())
}

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The whole HTTP application.
pub fn router_with(app: App, web: web::WebConfig) -> Router {
    let max_document_bytes = app.max_document_bytes();
    let (api, mut doc) = api_router(max_document_bytes).split_for_parts();
    add_common_errors(&mut doc);
    // served as serialized once: the document's tree is megabytes, cloned per request
    let doc = axum::body::Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    let serve_doc = move || {
        let doc = doc.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
    };
    let x_request_id = HeaderName::from_static("x-request-id");
    let secure = web.secure_transport;
    let state = AppState {
        app,
        web,
        unauthenticated: Default::default(),
    };
    let router = api
        .route("/", get(routes::auth::index))
        .route("/login", get(routes::auth::index).post(routes::auth::login_form))
        .route("/login/second-factor", get(routes::auth::second_factor_form_page).post(routes::auth::second_factor_form))
        .route("/logout", axum::routing::post(routes::auth::logout_form))
        .route("/auth/oidc/start", get(oidc::start))
        .route("/metrics", get(metrics::page))
        .merge(ui::routes(max_document_bytes))
        .route(oidc::CALLBACK_PATH, get(oidc::callback))
        .route("/api/v1/openapi.json", get(serve_doc.clone()))
        .route("/api/docs/openapi.json", get(serve_doc))
        .merge(SwaggerUi::new("/api/docs").config(utoipa_swagger_ui::Config::new(["/api/docs/openapi.json"])))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(extract::JSON_LIMIT))
        // gzip bodies (HEC and NDJSON senders compress); read through the same size caps
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(axum::middleware::map_request(content_coding_lowercase))
        .layer(axum::middleware::from_fn(accept::body_timeout_response))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::map_response(ensure_envelope))
        .layer(axum::middleware::from_fn(routes::ingest::hec_shape))
        .layer(axum::middleware::from_fn(routes::thehive::thehive_shape))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }).on_failure(log_failure))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid));
    if secure {
        router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ))
    } else {
        router
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, within `limits`.
pub async fn serve_tls(
    listener: tls::TlsListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    accept::serve_with(listener, router, limits, shutdown, tls::TlsPeer).await
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains in-flight requests;
/// connections are capped and timed as `limits` says (see `accept`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    accept::serve_with(listener, router, limits, shutdown, |a| a).await
}
