//! `weir check` and `weir run` on good and bad configs: the shipped examples load with
//! their modules; a bad config is refused with the key path and line, before anything
//! is bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use weir_system_tests::paths;
use weir_system_tests::proxy::{HEADER_OPS, MISBEHAVE};
use weir_system_tests::Proxy;

/// 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in config"))
}

/// A valid config with `extra` spliced in at the marker lines.
fn config(proxy_extra: &str, listen_extra: &str, module_extra: &str, chain_extra: &str) -> String {
    format!(
        "version = 1\n\
         [proxy]\n\
         aliases = [\"localhost\"]\n\
         {proxy_extra}\n\
         [[listen]]\n\
         transport = \"udp\"\n\
         address = \"127.0.0.1:1\"\n\
         {listen_extra}\n\
         [modules.headers]\n\
         component = \"{HEADER_OPS}\"\n\
         {module_extra}\n\
         [modules.headers.params]\n\
         append = [\"X-Weir: check\"]\n\
         [[route]]\n\
         name = \"default\"\n\
         next_hop = \"sip:127.0.0.1:5070\"\n\
         request = [{{ module = \"headers\"{chain_extra} }}]\n"
    )
}

/// (config, key path, marker for its line, what the message says)
fn bad_configs() -> Vec<(String, &'static str, &'static str, &'static str)> {
    vec![
        (
            config("max_mesage_size = 2000", "", "", ""),
            "proxy.max_mesage_size",
            "max_mesage_size",
            "unknown field",
        ),
        (
            config("", "adress = \"127.0.0.1:2\"", "", ""),
            "listen[0].adress",
            "adress",
            "unknown field",
        ),
        (
            config("", "", "memory = 4", ""),
            "modules.headers.memory",
            "memory = 4",
            "unknown field",
        ),
        (
            config("", "", "", ", on_eror = \"skip\""),
            "route[0].request[0].on_eror",
            "on_eror",
            "unknown field",
        ),
        (
            config("", "", "timeout_ms = 0", ""),
            "modules.headers.timeout_ms",
            "timeout_ms = 0",
            "between",
        ),
        (
            config("", "", "", ", on_error = \"reply-99\""),
            "route[0].request[0].on_error",
            "reply-99",
            "reply-99",
        ),
    ]
}

#[test]
fn every_example_config_checks_ok_with_its_modules() {
    let configs = paths::example_configs();
    assert!(!configs.is_empty(), "no config/*.toml");
    for path in configs {
        let out = Proxy::check_file(&path);
        assert!(
            out.status.success(),
            "weir check {} failed:\n{}",
            path.display(),
            out.output()
        );
        assert!(out.stdout.contains(": ok ("), "{}", out.output());
    }
}

#[test]
fn valid_config_with_both_modules_checks_ok() {
    let text = format!(
        "{}[modules.mis]\ncomponent = \"{MISBEHAVE}\"\nparams = {{ mode = \"ok\" }}\n",
        config("", "", "", "")
    );
    let out = Proxy::check(&text);
    assert!(out.status.success(), "{}", out.output());
    assert!(out.stdout.contains("2 modules loaded"), "{}", out.output());
}

#[test]
fn bad_keys_and_values_are_named_with_their_line() {
    for (text, key, marker, says) in bad_configs() {
        let line = line_of(&text, marker);
        let out = Proxy::check(&text);
        let msg = out.output();
        assert!(
            !out.status.success(),
            "{key}: weir check accepted it:\n{msg}"
        );
        assert!(
            msg.contains(&format!("line {line}: {key}:")),
            "{key} at line {line}:\n{msg}"
        );
        assert!(msg.contains(says), "{key}: {says:?} not in:\n{msg}");
    }
}

#[test]
fn run_with_a_bad_config_exits_nonzero_with_the_message() {
    let (text, key, marker, _) = bad_configs().swap_remove(0);
    let line = line_of(&text, marker);
    let out = Proxy::run_to_exit(&text, Duration::from_secs(30));
    let msg = out.output();
    assert!(
        !out.status.success(),
        "weir run accepted a bad config:\n{msg}"
    );
    assert!(msg.contains(&format!("line {line}: {key}:")), "{msg}");
    assert!(!msg.contains("weir is running"), "{msg}");
}

#[test]
fn module_init_errors_fail_the_check() {
    // Unknown header-ops param: the module's init refuses it and names it.
    let text = config("", "", "", "").replace(
        "append = [\"X-Weir: check\"]",
        "append = [\"X-Weir: check\"]\nremvoe = [\"X-Foo\"]",
    );
    let out = Proxy::check(&text);
    assert!(!out.status.success(), "{}", out.output());
    assert!(out.output().contains("remvoe"), "{}", out.output());

    let text = format!(
        "{}[modules.mis]\ncomponent = \"{MISBEHAVE}\"\nparams = {{ mode = \"bogus\" }}\n",
        config("", "", "", "")
    );
    let out = Proxy::check(&text);
    assert!(!out.status.success(), "{}", out.output());
    assert!(out.output().contains("bogus"), "{}", out.output());
    assert!(
        out.output().contains("mis"),
        "names the module: {}",
        out.output()
    );
}

#[test]
fn missing_component_is_named() {
    let text = config("", "", "", "").replace(HEADER_OPS, "/nonexistent/weir-test/none.wasm");
    let out = Proxy::check(&text);
    assert!(!out.status.success(), "{}", out.output());
    assert!(
        out.output().contains("/nonexistent/weir-test/none.wasm"),
        "{}",
        out.output()
    );
    assert!(out.output().contains("headers"), "{}", out.output());
}
