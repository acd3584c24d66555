//! Config snippets shared by the system tests (TOML text, `version = 1`).
//!
//! The standard test proxy has **one UDP receive thread** (`udp_workers = 1`): requests
//! on a UDP listener are then handled strictly in arrival order, which is what lets a
//! test prove that something did *not* happen: send the request that must have no
//! effect, then a sentinel that must have one, and check the sentinel's effect is the
//! first thing seen.

use crate::proxy::HEADER_OPS;

/// `version = 1` and a `[proxy]` table with one UDP receive thread.
pub fn header() -> String {
    "version = 1\n\n[proxy]\naliases = [\"localhost\"]\nudp_workers = 1\n\n".to_string()
}

/// UDP and TCP listeners named `udp` and `tcp` on `127.0.0.1:port`.
pub fn listeners(port: u16) -> String {
    format!(
        "[[listen]]\nname = \"udp\"\ntransport = \"udp\"\naddress = \"127.0.0.1:{port}\"\n\n\
         [[listen]]\nname = \"tcp\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\n"
    )
}

/// UDP and TCP listeners named `udp6` and `tcp6` on `[::1]:port`.
pub fn listeners_v6(port: u16) -> String {
    format!(
        "[[listen]]\nname = \"udp6\"\ntransport = \"udp\"\naddress = \"[::1]:{port}\"\n\n\
         [[listen]]\nname = \"tcp6\"\ntransport = \"tcp\"\naddress = \"[::1]:{port}\"\n\n"
    )
}

/// The header-ops module as `headers`, as in `config/stateless.toml`: removes
/// `X-Debug-*` headers and appends `X-Weir: stateless`.
pub fn header_ops() -> String {
    format!(
        "[modules.headers]\ncomponent = \"{HEADER_OPS}\"\n\
         [modules.headers.params]\nremove_prefix = [\"X-Debug-\"]\nappend = [\"X-Weir: stateless\"]\n\n"
    )
}

/// A route named `name` forwarding everything to `next_hop` through the `headers`
/// module.
pub fn route_via_headers(name: &str, next_hop: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\nmode = \"stateless\"\nnext_hop = \"{next_hop}\"\n\
         request = [{{ module = \"headers\", on_error = \"reply-500\" }}]\n\n"
    )
}

/// The standard test proxy: UDP+TCP on `127.0.0.1:port`, header-ops, one route to
/// `next_hop` (e.g. `sip:127.0.0.1:5070`).
pub fn standard(port: u16, next_hop: &str) -> String {
    format!(
        "{}{}{}{}",
        header(),
        listeners(port),
        header_ops(),
        route_via_headers("default", next_hop)
    )
}

/// A `[transaction]` table with `settings` as its `key = value` lines (e.g.
/// `"t1_ms = 100\nfr_timer_ms = 1000"`).
pub fn transaction(settings: &str) -> String {
    format!("[transaction]\n{}\n\n", settings.trim())
}

/// A `mode = "stateful"` route named `name`; `next_hop` is TOML (a quoted URI, an
/// array of URIs for one parallel group, an array of arrays for serial groups) or empty
/// for none (the Request-URI decides); `extra` holds more `key = value` lines.
pub fn stateful_route(name: &str, next_hop: &str, extra: &str) -> String {
    let hop = if next_hop.is_empty() {
        String::new()
    } else {
        format!("next_hop = {next_hop}\n")
    };
    format!(
        "[[route]]\nname = \"{name}\"\nmode = \"stateful\"\n{hop}{}\n\n",
        extra.trim()
    )
}
