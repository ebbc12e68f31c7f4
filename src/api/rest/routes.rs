//! REST routing shared by every API surface: a path answers the methods it serves, and any
//! other method with 405 and an `Allow` header (RFC 9110), not a 404 or a 400.

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};

/// `405 Method Not Allowed` naming what the path accepts, in the JSON error shape of every
/// REST error.
pub fn method_not_allowed(request: &HttpRequest, allow: &Method) -> HttpResponse {
    HttpResponse::build(StatusCode::METHOD_NOT_ALLOWED)
        .insert_header((header::ALLOW, allow.as_str()))
        .json(serde_json::json!({
            "error": format!("{} is not allowed on {}; use {allow}", request.method(), request.path())
        }))
}

/// A resource at `path` that runs `handler` for `method` and answers any other method with 405.
pub fn only<F, Args>(path: &str, method: Method, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let allow = method.clone();
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move |request: HttpRequest| {
            let allow = allow.clone();
            async move { method_not_allowed(&request, &allow) }
        }))
}
