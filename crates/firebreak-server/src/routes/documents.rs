//! `/api/v1/tickets/{ref}/documents`: evidence upload (multipart, streamed, hashed and
//! encrypted as it arrives), listing, metadata, and verified download.

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::Auth;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, Multipart, Path, Request, State,
};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use firebreak_app::AppError;
use firebreak_app::documents::DocumentMeta;
use firebreak_domain::api::{DocumentView, Page};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The multipart form of `POST /tickets/{ref}/documents`.
#[derive(ToSchema)]
#[allow(dead_code, reason = "documents the multipart body in OpenAPI")]
pub struct DocumentUpload {
    /// The file (its name is kept as a label, never used as a path).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    description: Option<String>,
    /// Where the evidence was collected (host, mailbox, person).
    source: Option<String>,
    /// How it was collected (tool, command, who held it).
    collection_notes: Option<String>,
}

pub fn router(max_document_bytes: u64) -> OpenApiRouter<AppState> {
    let limit = usize::try_from(max_document_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1024 * 1024);
    OpenApiRouter::new()
        .routes(routes!(upload_document, list_documents))
        .layer(DefaultBodyLimit::max(limit))
        .routes(routes!(get_document))
        .routes(routes!(download_document))
}

fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the upload is too large",
        )
    } else {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "bad_multipart",
            "body",
            e.body_text(),
        )
    }
}

const TEXT_FIELD_LIMIT: usize = 64 * 1024;

/// Add a document to a ticket (`multipart/form-data`, the file in field `file`). Stored
/// encrypted under its SHA-256; the addition is in the ticket's chain of custody.
#[utoipa::path(post, path = "/tickets/{ref}/documents", tag = "documents",
    params(("ref" = String, Path, description = "Ticket id or number")),
    request_body(content = DocumentUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = DocumentView), (status = 413, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn upload_document(
    State(s): State<AppState>,
    Path(reference): Path<String>,
    req: Request,
) -> ApiResult<(StatusCode, Json<DocumentView>)> {
    let (mut parts, body) = req.into_parts();
    let Auth(p) = Auth::from_request_parts(&mut parts, &s).await?;
    // authorization before a single byte of the upload is read
    s.app.document_target(&p, &reference).await?;
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ct.starts_with("multipart/form-data") {
        return Err(ApiError::field(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content-type",
            "expected multipart/form-data with the file in field `file`",
        ));
    }
    let mut mp = Multipart::from_request(Request::from_parts(parts, body), &s)
        .await
        .map_err(|e| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "bad_multipart",
                "body",
                e.body_text(),
            )
        })?;
    let (meta, sealed) = receive_document(&s, &mut mp, None).await?;
    let view = s.app.add_document(&p, &reference, meta, sealed).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Reads a document form (`file`, `description`, `source`, `collection_notes`), streaming the
/// file into the sealed blob writer. With `csrf`, the form's first field must be `csrf_token`
/// with that value (a page's upload form), checked before a byte of the file is read.
pub(crate) async fn receive_document(
    s: &AppState,
    mp: &mut Multipart,
    csrf: Option<&str>,
) -> Result<(DocumentMeta, firebreak_app::documents::SealedBlob), ApiError> {
    if let Some(expected) = csrf {
        use subtle::ConstantTimeEq;
        let mut ok = false;
        if let Some(mut field) = mp.next_field().await.map_err(|e| multipart_error(&e))?
            && field.name() == Some("csrf_token")
        {
            // a token is short: read at most a little more than one
            let mut sent = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
                sent.extend_from_slice(&chunk);
                if sent.len() > 256 {
                    break;
                }
            }
            ok = !sent.is_empty()
                && sent.len() <= 256
                && bool::from(sent.as_slice().ct_eq(expected.as_bytes()));
        }
        if !ok {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_rejected",
                "cross-site request refused: missing or wrong CSRF token",
            ));
        }
    }
    let mut meta = DocumentMeta::default();
    let mut sealed = None;
    while let Some(mut field) = mp.next_field().await.map_err(|e| multipart_error(&e))? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" => {
                if sealed.is_some() {
                    return Err(ApiError::field(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation_failed",
                        "file",
                        "only one file per request",
                    ));
                }
                meta.filename = field.file_name().unwrap_or("").to_string();
                meta.content_type = field.content_type().map(str::to_string);
                let mut w = s.app.document_writer()?;
                while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
                    w.push(&chunk)
                        .map_err(|e| ApiError::from(AppError::from(e)))?;
                }
                let done = tokio::task::spawn_blocking(move || w.finish())
                    .await
                    .map_err(|e| ApiError::from(AppError::Unexpected(anyhow::anyhow!("{e}"))))?
                    .map_err(|e| ApiError::from(AppError::from(e)))?;
                sealed = Some(done);
            }
            "description" | "source" | "collection_notes" => {
                // read in chunks: a huge text field is refused as soon as it passes the limit
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(&e))? {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > TEXT_FIELD_LIMIT {
                        break;
                    }
                }
                if bytes.len() > TEXT_FIELD_LIMIT {
                    return Err(ApiError::field(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation_failed",
                        &name,
                        "too long",
                    ));
                }
                let text = String::from_utf8(bytes).map_err(|_| {
                    ApiError::field(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "validation_failed",
                        &name,
                        "must be UTF-8 text",
                    )
                })?;
                match name.as_str() {
                    "description" => meta.description = Some(text),
                    "source" => meta.source = Some(text),
                    _ => meta.collection_notes = Some(text),
                }
            }
            other => {
                return Err(ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    if other.is_empty() { "body" } else { other },
                    "unknown form field (expected file, description, source, collection_notes)",
                ));
            }
        }
    }
    let Some(sealed) = sealed else {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "file",
            "the form has no `file` field",
        ));
    };
    Ok((meta, sealed))
}

/// The ticket's documents, oldest first.
#[utoipa::path(get, path = "/tickets/{ref}/documents", tag = "documents",
    params(("ref" = String, Path, description = "Ticket id or number")),
    responses((status = 200, body = Page<DocumentView>)))]
pub async fn list_documents(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path(reference): Path<String>,
) -> ApiResult<Json<Page<DocumentView>>> {
    let items = s.app.list_documents(&p, &reference).await?;
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

/// One document's metadata and custody header.
#[utoipa::path(get, path = "/tickets/{ref}/documents/{id}", tag = "documents",
    params(("ref" = String, Path, description = "Ticket id or number"), ("id" = String, Path, description = "Document id")),
    responses((status = 200, body = DocumentView)))]
pub async fn get_document(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((reference, id)): Path<(String, String)>,
) -> ApiResult<Json<DocumentView>> {
    Ok(Json(s.app.get_document(&p, &reference, &id).await?))
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266).
fn content_disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

/// Download a document's bytes, after their SHA-256 is checked (a mismatch is refused, never
/// served). Every download is recorded in the audit chain.
#[utoipa::path(get, path = "/tickets/{ref}/documents/{id}/content", tag = "documents",
    params(("ref" = String, Path, description = "Ticket id or number"), ("id" = String, Path, description = "Document id")),
    responses((status = 200, description = "The document's bytes", content_type = "application/octet-stream")))]
pub async fn download_document(
    State(s): State<AppState>,
    Auth(p): Auth,
    Path((reference, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (view, mut blob) = s.app.open_document(&p, &reference, &id).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        loop {
            let item = match blob.next_chunk() {
                Ok(Some(c)) => Ok(Bytes::from(c)),
                Ok(None) => break,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let stop = item.is_err();
            if tx.blocking_send(item).is_err() || stop {
                break;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut res = Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(&view.filename),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(view.size));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if let Ok(v) = HeaderValue::from_str(&view.sha256) {
        h.insert("x-content-sha256", v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_is_safe() {
        let v = content_disposition("r\u{e9}sum\u{e9} \"x\".pdf");
        let s = v.to_str().unwrap_or("");
        assert!(
            s.starts_with("attachment; filename=\"r_sum_ _x_.pdf\""),
            "{s}"
        );
        assert!(
            s.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22.pdf"),
            "{s}"
        );
    }
}
