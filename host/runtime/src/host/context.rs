//! `context`: who is calling and why.

use super::traced_now;
use crate::bindings::toolgate::plugin::context::{CallContext, Host};
use crate::state::HostState;

impl Host for HostState {
    async fn current(&mut self) -> wasmtime::Result<CallContext> {
        traced_now("context", "current", || self.context())
    }
}

impl HostState {
    fn context(&self) -> wasmtime::Result<CallContext> {
        let call = self.call()?;
        let ctx = &call.context;
        Ok(CallContext {
            action_id: ctx.action_id.clone(),
            tool: call.tool.name.clone(),
            caller: ctx.caller.name.clone(),
            role: ctx.caller.role.as_str().to_owned(),
            justification: ctx.justification.clone(),
        })
    }
}
