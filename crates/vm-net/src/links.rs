//! The link and address steps both bindings take in the pod's namespace. Each may find its
//! work already done by an earlier run that stopped half-way, and then keeps what is there.

use crate::{tap, Result};
use ipnet::IpNet;
use oxivirt_netlink::{BridgeOptions, Handle, Link};

/// The bridge `name`, made with `mtu` if it does not exist.
pub(crate) fn bridge(nl: &mut Handle, name: &str, mtu: u32) -> Result<Link> {
    if let Some(l) = nl.link_by_name(name)? {
        return Ok(l);
    }
    nl.add_bridge(&BridgeOptions {
        name,
        mtu: Some(mtu),
        vlan_filtering: false,
    })?;
    Ok(nl.require_link(name)?)
}

/// Adds `addr` (without DAD) to link `index`; finding it there already is not an error.
pub(crate) fn add_address(nl: &mut Handle, index: u32, addr: IpNet) -> Result<()> {
    match nl.add_address(index, addr, true) {
        Err(e) if !e.is_exists() => Err(e.into()),
        _ => Ok(()),
    }
}

/// Tap `name` (made if missing) with `mtu`, up, as a port of the bridge `bridge`.
pub(crate) fn tap_on_bridge(
    nl: &mut Handle,
    name: &str,
    multiqueue: bool,
    mtu: u32,
    bridge: u32,
) -> Result<()> {
    if nl.link_by_name(name)?.is_none() {
        tap::create(name, multiqueue)?;
    }
    let tap = nl.require_link(name)?;
    nl.set_mtu(tap.index, mtu)?;
    nl.set_master(tap.index, bridge)?;
    nl.set_up(tap.index, true)?;
    Ok(())
}
