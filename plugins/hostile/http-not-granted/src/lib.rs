//! http-not-granted: apply sends outgoing HTTP GETs through wasi:http/outgoing-handler,
//! to http://127.0.0.1:9/ (an address) and http://localhost:9/ (a name to resolve).
//! Both targets are on this machine on purpose: a fixture must never send traffic
//! off the machine, even through a host whose sandbox is broken.
//! With no network grant the host must refuse: either it does not link
//! wasi:http at all (instantiation fails, naming the missing import) or every
//! request fails and apply returns Err("request refused: ..."). An Ok (outputs
//! carry the status codes) means a request got through.
#![allow(unused_variables)]

wit_bindgen::generate!({ path: "../../../wit", world: "provisioner-plugin" });
include!("../../common/provisioner.rs");

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

const AUTHORITIES: [&str; 2] = ["127.0.0.1:9", "localhost:9"];

/// One GET to http://{authority}/: the response status, or why there was none.
fn get(authority: &str) -> Result<u16, String> {
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "bad method".to_string())?;
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "bad scheme".to_string())?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority".to_string())?;
    request.set_path_with_query(Some("/")).map_err(|()| "bad path".to_string())?;
    let body = request.body().map_err(|()| "request body already taken".to_string())?;
    let pending = outgoing_handler::handle(request, None).map_err(|err| err.to_string())?;
    OutgoingBody::finish(body, None).map_err(|err| err.to_string())?;
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(err))) => Err(err.to_string()),
        Some(Err(())) => Err("response already taken".to_string()),
        None => Err("no response although the pollable was ready".to_string()),
    }
}

fn apply(
    ctx: Context,
    kind: String,
    prior: Option<Json>,
    desired: Json,
    cred: Option<Credential>,
) -> Result<Applied, String> {
    let mut responses = Vec::new();
    let mut refusals = Vec::new();
    for authority in AUTHORITIES {
        let url = format!("http://{authority}/");
        match get(authority) {
            Ok(status) => responses.push(format!("{}:{status}", json_string(&url))),
            Err(err) => refusals.push(format!("{url}: {err}")),
        }
    }
    if responses.is_empty() {
        return Err(format!("request refused: {}", refusals.join("; ")));
    }
    Ok(Applied { state: "{}".to_string(), outputs: format!("{{{}}}", responses.join(",")) })
}
