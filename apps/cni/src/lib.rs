//! The boundary of the `oxivirt-cni` binary, as a library so that the meta plugin can run
//! these plugins in-process with exactly the same behaviour: the table of plugins served
//! by name, and the one mapping of their errors to CNI codes ([`error`]).

pub mod error;

use oxivirt_cni_spec::plugin::Call;
use oxivirt_cni_spec::CniError;
use oxivirt_ipam::plugin as ipam;
use oxivirt_pod_net::{bridge, macvlan};

/// A plugin's command handler; its errors go through [`error::to_cni`].
pub type Handler = fn(Call<'_>) -> Result<Option<String>, oxivirt_pod_net::Error>;

/// The handler of the interface or IPAM plugin called `name`.
pub fn plugin(name: &str) -> Option<Handler> {
    Some(match name {
        "bridge" => bridge::handle,
        "macvlan" => macvlan::handle,
        "host-local" => |call| Ok(ipam::host_local_handle(call)?),
        "static" => |call| Ok(ipam::static_handle(call)?),
        _ => return None,
    })
}

/// Runs `handler` for one call and returns the wire error on failure.
pub fn call(handler: Handler, call: Call<'_>) -> Result<Option<String>, CniError> {
    handler(call).map_err(|e| error::to_cni(&e))
}
