//! Generated bindings for the `weir:sip/module` world. Only the export side
//! (`handler`) and the WIT types are used from here: imports are defined by hand
//! in `host/` so every guest-controlled length is checked before it is copied.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "weir:sip/module",
    additional_derives: [PartialEq],
    with: {
        "weir:sip/message.message": crate::host::message::MessageRep,
    },
});
