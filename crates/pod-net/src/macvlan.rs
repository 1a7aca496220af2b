//! The `macvlan` plugin: a macvlan sub-interface of a host link, moved into the container.

use crate::error::{Error, Result};
use crate::iface;
use oxivirt_cni_spec::plugin::{require_check_support, Call};
use oxivirt_cni_spec::{parse_json, CniResult, Command, NetConf};
use oxivirt_ipam::plugin as ipam;
use oxivirt_netlink::{Handle, MacvlanMode, MacvlanOptions};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MacvlanConf {
    #[serde(default)]
    master: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    mtu: i64,
    #[serde(default)]
    link_in_container: bool,
}

struct Config {
    conf: NetConf,
    mv: MacvlanConf,
    mode: MacvlanMode,
    mac: Option<[u8; 6]>,
    layer3: bool,
}

fn parse_mode(s: &str) -> Result<MacvlanMode> {
    Ok(match s {
        "" | "bridge" => MacvlanMode::Bridge,
        "private" => MacvlanMode::Private,
        "vepa" => MacvlanMode::Vepa,
        "passthru" => MacvlanMode::Passthru,
        other => {
            return Err(Error::config(format!(
                "network config: field `mode`: unknown macvlan mode {other:?} (bridge, private, vepa, passthru)"
            )))
        }
    })
}

fn mode_name(m: MacvlanMode) -> &'static str {
    match m {
        MacvlanMode::Bridge => "bridge",
        MacvlanMode::Private => "private",
        MacvlanMode::Vepa => "vepa",
        MacvlanMode::Passthru => "passthru",
    }
}

/// The interface of the host's default route: the reference's default `master`.
fn default_route_interface(nl: &mut Handle) -> Result<String> {
    let routes = nl.routes()?;
    let oif = routes
        .iter()
        .find(|r| r.dst.prefix_len() == 0 && r.dst.addr().is_ipv4() && r.oif.is_some())
        .and_then(|r| r.oif)
        .ok_or_else(|| {
            Error::config("network config: field `master` is missing and there is no default route")
        })?;
    Ok(nl.link_by_index(oif)?.map(|l| l.name).unwrap_or_default())
}

fn load(call: &Call<'_>) -> Result<(Config, oxivirt_cni_spec::Version)> {
    let (conf, version) = NetConf::load(call.stdin)?;
    let mv: MacvlanConf = parse_json(call.stdin, "network config")?;
    let mode = parse_mode(&mv.mode)?;
    if mv.mtu < 0 || mv.mtu > 65535 {
        return Err(Error::config(format!(
            "network config: field `mtu`: {} is not a valid MTU",
            mv.mtu
        )));
    }
    if call.env.command == Command::Add {
        call.env.args.check_known(&ipam::KNOWN_ARGS)?;
    }
    let mac = iface::requested_mac(call, &conf)?;
    if mac.is_some() && mode == MacvlanMode::Passthru {
        return Err(Error::config(
            "a MAC address cannot be set in passthru mode",
        ));
    }
    let layer3 = iface::layer3(&conf);
    Ok((
        Config {
            conf,
            mv,
            mode,
            mac,
            layer3,
        },
        version,
    ))
}

pub fn handle(call: Call<'_>) -> Result<Option<String>> {
    let (cfg, version) = load(&call)?;
    match call.env.command {
        Command::Add => add(&call, &cfg).map(|r| Some(r.to_json(version))),
        Command::Del => del(&call, &cfg).map(|_| None),
        Command::Check => {
            require_check_support(version)?;
            check(&call, &cfg).map(|_| None)
        }
        Command::Gc | Command::Status => {
            if cfg.layer3 {
                ipam::delegate(&call, &cfg.conf, call.env.command)?;
            }
            Ok(None)
        }
        Command::Version => Ok(None),
    }
}

fn add(call: &Call<'_>, cfg: &Config) -> Result<CniResult> {
    let ns = iface::open_netns(call)?;
    let ifname = call.env.ifname.as_str();
    let mut cont = Handle::in_netns(&ns)?;
    if cont.link_by_name(ifname)?.is_some() {
        return Err(Error::IfnameTaken(ifname.to_string()));
    }
    // With linkInContainer the master lives in the container and the link is made there.
    let mut host = if cfg.mv.link_in_container {
        Handle::in_netns(&ns)
    } else {
        Handle::new()
    }?;
    let master_name = if cfg.mv.master.is_empty() {
        default_route_interface(&mut host)?
    } else {
        cfg.mv.master.clone()
    };
    let master = host.link_by_name(&master_name)?.ok_or_else(|| {
        Error::config(format!(
            "network config: field `master`: link {master_name:?} not found"
        ))
    })?;
    let mtu = (cfg.mv.mtu > 0).then_some(cfg.mv.mtu as u32);
    if let Some(m) = mtu {
        if m > master.mtu {
            return Err(Error::config(format!(
                "network config: field `mtu`: invalid MTU {m}, must be [0, master MTU({})]",
                master.mtu
            )));
        }
    }
    let target_ns = (!cfg.mv.link_in_container).then(|| ns.fd());
    host.add_macvlan(&MacvlanOptions {
        name: ifname,
        parent: master.index,
        mode: cfg.mode,
        mtu,
        mac: cfg.mac,
        netns: target_ns,
    })
    .map_err(|e| {
        Error::from(e).context(format!(
            "failed to create macvlan {ifname} on {master_name}"
        ))
    })?;
    let link = cont.require_link(ifname)?;
    let mut ipam_done = false;
    let res = (|| -> Result<CniResult> {
        let mut result = CniResult::default();
        if cfg.layer3 {
            let r = ipam::delegate(call, &cfg.conf, Command::Add)?;
            ipam_done = true;
            let r = iface::ipam_addresses(r)?;
            result.ips = r.ips;
            result.routes = r.routes;
            result.dns = r.dns;
            for ip in result.ips.iter_mut() {
                ip.interface = Some(0);
            }
            iface::container_sysctls(&ns, ifname, false)?;
            iface::configure(&mut cont, link.index, &result, 0, true)?;
        } else {
            cont.set_up(link.index, true)?;
        }
        let now = cont.require_link(ifname)?;
        result.interfaces = vec![iface::container_interface(&now, &ns)];
        iface::apply_conf_dns(&mut result, &cfg.conf);
        Ok(result)
    })();
    res.map_err(|error| {
        let mut cleanup = Vec::new();
        if ipam_done {
            cleanup.extend(
                ipam::delegate(call, &cfg.conf, Command::Del)
                    .err()
                    .map(Error::from),
            );
        }
        cleanup.extend(cont.del_link(link.index).err().map(Error::from));
        Error::with_cleanup(error, cleanup)
    })
}

fn del(call: &Call<'_>, cfg: &Config) -> Result<()> {
    if cfg.layer3 {
        ipam::delegate(call, &cfg.conf, Command::Del)?;
    }
    iface::remove_container_link(call, None)
}

fn check(call: &Call<'_>, cfg: &Config) -> Result<()> {
    let ns = iface::open_netns(call)?;
    if cfg.layer3 {
        ipam::delegate(call, &cfg.conf, Command::Check)?;
    }
    let prev = oxivirt_cni_spec::plugin::prev_result(&cfg.conf)?;
    let mut cont = Handle::in_netns(&ns)?;
    let link = cont
        .link_by_name(&call.env.ifname)?
        .ok_or_else(|| Error::CheckMismatch(format!("interface {} not found", call.env.ifname)))?;
    if link.kind.as_deref() != Some("macvlan") {
        return Err(Error::CheckMismatch(format!(
            "{} is not a macvlan",
            link.name
        )));
    }
    if link.macvlan_mode != Some(cfg.mode) {
        return Err(Error::CheckMismatch(format!(
            "{} mode is {:?}, config says {}",
            link.name,
            link.macvlan_mode,
            mode_name(cfg.mode)
        )));
    }
    if let Some(i) = prev.interfaces.iter().find(|i| i.name == link.name) {
        iface::check_mac(&link.name, &link, &i.mac)?;
    }
    iface::validate(&mut cont, link.index, &link.name, &prev, 0)
}
