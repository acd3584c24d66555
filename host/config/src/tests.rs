use super::*;

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("/base"))
}

fn err_of(text: &str) -> (usize, String, String) {
    match parse(text) {
        Err(Error::Invalid {
            line, key, message, ..
        }) => (line, key, message),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("config should have been refused"),
    }
}

const FULL: &str = r#"
version = 1

[proxy]
aliases = ["Proxy.Example.com"]
max_message_size = 32768

[runtime]
cache = false

[[listen]]
name = "udp4"
transport = "udp"
address = "127.0.0.1:5060"

[[listen]]
transport = "TCP"
address = "[::1]:5060"
advertise = "sip.example.com:5060"

[modules.headers]
component = "../plugins/h.wasm"
timeout_ms = 5
[modules.headers.params]
keep = ["User-Agent"]
compact = true
nested.level = 3

[[route]]
name = "invites"
methods = ["INVITE"]
listeners = ["udp4"]
next_hop = "sip:127.0.0.1:5070"
request = [{ module = "headers", on_error = "skip" }]
reply = [{ module = "headers", on_error = "reply-503" }]
"#;

#[test]
fn full_config_parses() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.proxy.aliases, vec!["proxy.example.com"]);
    assert_eq!(c.proxy.max_message_size, 32768);
    assert!(c.runtime.cache_dir.is_none());
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.listeners[1].name, "tcp-[::1]:5060");
    assert_eq!(c.listeners[1].transport, Transport::Tcp);
    assert_eq!(
        c.listeners[1].advertise,
        Some(("sip.example.com".to_string(), Some(5060)))
    );
    let m = &c.modules["headers"];
    assert_eq!(m.component, PathBuf::from("/base/../plugins/h.wasm"));
    assert_eq!(m.timeout, Duration::from_millis(5));
    assert_eq!(m.tenant, "default");
    assert!(m
        .params
        .contains(&("nested.level".to_string(), ParamValue::Integer(3))));
    assert!(m.params.contains(&(
        "keep".to_string(),
        ParamValue::TextList(vec!["User-Agent".into()])
    )));
    let r = &c.routes[0];
    assert_eq!(r.request[0].on_error, OnError::Skip);
    assert_eq!(r.reply[0].on_error, OnError::Reply(503));
    assert!(r.record_route);
}

#[test]
fn unknown_key_names_path_and_line() {
    let (line, key, msg) = err_of(
        "version = 1\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\nport = 5\n",
    );
    assert_eq!(line, 5, "{msg}");
    assert!(key.starts_with("listen[0]") || key == "listen", "{key}");
    assert!(msg.contains("port"), "{msg}");
}

#[test]
fn unknown_top_level_key() {
    let (line, _key, msg) = err_of("version = 1\nlisten_udp = 3\n");
    assert_eq!(line, 2);
    assert!(msg.contains("listen_udp"), "{msg}");
}

#[test]
fn wrong_type_is_reported() {
    let (line, key, _msg) = err_of(
        "version = 1\n[proxy]\nudp_workers = \"two\"\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n",
    );
    assert_eq!(line, 3);
    assert_eq!(key, "proxy.udp_workers");
}

#[test]
fn unknown_module_in_chain() {
    let (line, key, msg) = err_of(
        "version = 1\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n[[route]]\nname = \"r\"\nrequest = [\n  { module = \"nope\" },\n]\n",
    );
    assert_eq!(key, "route[0].request[0].module");
    assert_eq!(line, 8);
    assert!(msg.contains("nope"));
}

#[test]
fn bad_address_and_transport() {
    let (line, key, _) =
        err_of("version = 1\n[[listen]]\ntransport = \"udp\"\naddress = \"localhost\"\n");
    assert_eq!((line, key.as_str()), (4, "listen[0].address"));
    let (line, key, _) =
        err_of("version = 1\n[[listen]]\ntransport = \"sctp\"\naddress = \"127.0.0.1:1\"\n");
    assert_eq!((line, key.as_str()), (3, "listen[0].transport"));
}

#[test]
fn version_is_required_and_checked() {
    let (_, key, _) = err_of("[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:1\"\n");
    assert!(key.contains("version") || key == "(top level)", "{key}");
    let (line, key, _) = err_of("version = 2\n");
    assert_eq!((line, key.as_str()), (1, "version"));
}

#[test]
fn tenant_isolation_in_chains() {
    let (_, key, msg) = err_of(
        "version = 1\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n[modules.m]\ncomponent = \"m.wasm\"\ntenant = \"acme\"\n[[route]]\nname = \"r\"\ntenant = \"other\"\nrequest = [{ module = \"m\" }]\n",
    );
    assert_eq!(key, "route[0].request[0].module");
    assert!(msg.contains("acme"));
}

#[test]
fn on_error_values() {
    let (_, key, _) = err_of(
        "version = 1\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n[modules.m]\ncomponent = \"m.wasm\"\n[[route]]\nname = \"r\"\nrequest = [{ module = \"m\", on_error = \"explode\" }]\n",
    );
    assert_eq!(key, "route[0].request[0].on_error");
}

#[test]
fn mixed_param_arrays_refused() {
    let (_, key, _) = err_of(
        "version = 1\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n[modules.m]\ncomponent = \"m.wasm\"\nparams = { a = [1, \"x\"] }\n",
    );
    assert_eq!(key, "modules.m.params.a");
}

#[test]
fn shipped_configs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) == Some("toml") {
            Config::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            seen += 1;
        }
    }
    assert!(seen >= 1, "no configs found in {}", dir.display());
}

#[test]
fn next_hop_must_be_a_sip_uri() {
    for bad in ["127.0.0.1:5070", "tel:+1555", "sip:", "sip:a b"] {
        let text = format!(
            "version = 1\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n[[route]]\nname = \"r\"\nnext_hop = \"{bad}\"\n"
        );
        let (line, key, _) = err_of(&text);
        assert_eq!((line, key.as_str()), (7, "route[0].next_hop"), "{bad}");
    }
}

#[test]
fn next_hop_forms_and_stateful_settings() {
    let base = "version = 1\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n";
    let c = parse(&format!(
        "{base}[transaction]\nfr_timer_ms = 2000\n[[route]]\nname = \"r\"\nmode = \"stateful\"\nfr_inv_timer_ms = 9000\nnext_hop = [[\"sip:127.0.0.1:5071\"], [\"sip:127.0.0.1:5072\", \"sip:127.0.0.1:5073\"]]\n"
    ))
    .unwrap();
    assert_eq!(c.transaction.fr_timer, Duration::from_secs(2));
    assert_eq!(c.transaction.fr_inv_timer, Duration::from_secs(120));
    let r = &c.routes[0];
    assert_eq!(r.mode, Mode::Stateful);
    assert_eq!(r.fr_inv_timer, Some(Duration::from_secs(9)));
    assert_eq!(r.next_hops.len(), 2);
    assert_eq!(r.next_hops[1].len(), 2);

    let c = parse(&format!(
        "{base}[[route]]\nname = \"r\"\nmode = \"stateful\"\nnext_hop = [\"sip:127.0.0.1:1\", \"sip:127.0.0.1:2\"]\n"
    ))
    .unwrap();
    assert_eq!(
        c.routes[0].next_hops,
        vec![vec![
            "sip:127.0.0.1:1".to_string(),
            "sip:127.0.0.1:2".to_string()
        ]]
    );

    let (line, key, _) = err_of(&format!(
        "{base}[[route]]\nname = \"r\"\nnext_hop = [\"sip:127.0.0.1:1\", \"sip:127.0.0.1:2\"]\n"
    ));
    assert_eq!((line, key.as_str()), (7, "route[0].next_hop"));
    let (_, key, _) = err_of(&format!(
        "{base}[modules.m]\ncomponent = \"m.wasm\"\n[[route]]\nname = \"r\"\nfailure = [{{ module = \"m\" }}]\n"
    ));
    assert_eq!(key, "route[0].failure");
    let (line, key, _) = err_of(&format!("{base}[transaction]\nt1_ms = 0\n"));
    assert_eq!((line, key.as_str()), (6, "transaction.t1_ms"));
}

#[test]
fn in_dialog_match() {
    let base = "version = 1\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n";
    let c = parse(&format!(
        "{base}[[route]]\nname = \"dialog\"\nin_dialog = true\n[[route]]\nname = \"initial\"\nin_dialog = false\n[[route]]\nname = \"any\"\n"
    ))
    .unwrap();
    let got: Vec<_> = c.routes.iter().map(|r| r.in_dialog).collect();
    assert_eq!(got, vec![Some(true), Some(false), None]);
    let (_, key, _) = err_of(&format!(
        "{base}[[route]]\nname = \"r\"\nin_dialog = \"yes\"\n"
    ));
    assert!(key.starts_with("route"), "{key}");
}
