//! Folding a route's module chain into one verdict, with each entry's failure policy.

use weir_config::{ChainEntry, OnError};
use weir_message::Message;
use weir_wasm::{CallContext, Hook, ModuleFailure, Verdict};

use crate::stats::inc;
use crate::{Core, Rx};

/// What a request chain decided.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Forward by the usual rules (Route, next hop, request URI).
    Continue,
    /// Forward to these targets (the first, in stateless mode).
    Forward(Vec<String>),
    /// Answer locally.
    Reply {
        code: u16,
        reason: String,
        headers: Vec<(String, String)>,
    },
    /// Discard.
    Drop,
    /// Keep the transaction pending (stateful routes only).
    Wait {
        branches: Vec<weir_wasm::BranchTarget>,
        timeout: std::time::Duration,
        code: u16,
    },
}

/// What a chain call knows beyond the message: the failed leg's status and the
/// cancelled flag (failure chains), the transaction, the processing's variables.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Extra<'a> {
    pub failure_status: u16,
    pub cancelled: bool,
    pub tx: u64,
    pub vars: Option<&'a std::cell::RefCell<weir_wasm::Vars>>,
}

fn wasm_transport(t: weir_transport::Transport) -> weir_wasm::Transport {
    match t {
        weir_transport::Transport::Udp => weir_wasm::Transport::Udp,
        weir_transport::Transport::Tcp => weir_wasm::Transport::Tcp,
    }
}

impl Core {
    /// Run one module, or report why it could not give a verdict.
    pub(crate) fn call_entry(
        &self,
        entry: &ChainEntry,
        msg: &mut Message,
        rx: Rx,
        hook: Hook,
        extra: Extra<'_>,
    ) -> Result<Verdict, ModuleFailure> {
        self.registry.with(&entry.module, |module| {
            let Some(module) = module else {
                return Err(ModuleFailure::Error(format!(
                    "module {} is not loaded",
                    entry.module
                )));
            };
            self.call_module(module, msg, rx, hook, extra)
        })
    }

    fn call_module(
        &self,
        module: &weir_wasm::LoadedModule,
        msg: &mut Message,
        rx: Rx,
        hook: Hook,
        extra: Extra<'_>,
    ) -> Result<Verdict, ModuleFailure> {
        let listener = self
            .transports
            .listeners()
            .get(rx.listener)
            .map_or("", |l| l.name.as_str());
        let mut ctx = CallContext::new(rx.src, wasm_transport(rx.transport), listener);
        ctx.hook = hook;
        ctx.connection = rx.conn;
        ctx.failure_status = extra.failure_status;
        ctx.cancelled = extra.cancelled;
        ctx.transaction = extra.tx;
        ctx.vars = extra.vars;
        if hook == Hook::Reply {
            module.on_reply(msg, &ctx)
        } else {
            module.on_request(msg, &ctx)
        }
    }

    pub(crate) fn failed(&self, route: &str, entry: &ChainEntry, failure: &ModuleFailure) {
        inc(&self.stats.module_failures);
        tracing::warn!(
            route,
            module = %entry.module,
            failure = %failure,
            policy = ?entry.on_error,
            "module failed"
        );
    }

    /// Run the request chain of `route` over `msg`.
    pub(crate) fn request_chain(
        &self,
        route: &weir_config::Route,
        msg: &mut Message,
        rx: Rx,
        extra: Extra<'_>,
    ) -> Outcome {
        for entry in &route.request {
            match self.call_entry(entry, msg, rx, Hook::Request, extra) {
                Ok(Verdict::Continue) => continue,
                Ok(Verdict::Forward(targets)) => return Outcome::Forward(targets),
                Ok(Verdict::Reply {
                    code,
                    reason,
                    headers,
                }) => {
                    return Outcome::Reply {
                        code,
                        reason,
                        headers,
                    }
                }
                Ok(Verdict::Drop) => return Outcome::Drop,
                Ok(Verdict::Wait {
                    branches,
                    timeout,
                    code,
                }) => {
                    return Outcome::Wait {
                        branches,
                        timeout,
                        code,
                    }
                }
                Err(failure) => {
                    self.failed(&route.name, entry, &failure);
                    match entry.on_error {
                        OnError::Skip => continue,
                        OnError::Drop => return Outcome::Drop,
                        OnError::Reply(code) => {
                            return Outcome::Reply {
                                code,
                                reason: String::new(),
                                headers: Vec::new(),
                            }
                        }
                    }
                }
            }
        }
        Outcome::Continue
    }

    /// Run the reply chain of `route` over a response; false means drop it.
    pub(crate) fn reply_chain(
        &self,
        route: &weir_config::Route,
        msg: &mut Message,
        rx: Rx,
    ) -> bool {
        for entry in &route.reply {
            match self.call_entry(entry, msg, rx, Hook::Reply, Extra::default()) {
                Ok(Verdict::Drop) => return false,
                Ok(_) => continue,
                Err(failure) => {
                    self.failed(&route.name, entry, &failure);
                    match entry.on_error {
                        OnError::Skip => continue,
                        // A reply cannot be answered: any other policy drops it.
                        OnError::Drop | OnError::Reply(_) => return false,
                    }
                }
            }
        }
        true
    }
}
