//! `resolv.conf` → CNI DNS, as host-local's `resolvConf` option does.

use crate::Error;
use oxivirt_cni_spec::Dns;
use std::path::Path;

pub fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns.nameservers.extend(words.next().map(str::to_string)),
            Some("domain") => dns.domain = words.next().unwrap_or("").to_string(),
            Some("search") => dns.search = words.map(str::to_string).collect(),
            Some("options") => dns.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

pub fn load(path: &Path) -> Result<Dns, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ResolvConf {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_resolv_conf() {
        let d = super::parse("# c\nnameserver 10.0.0.10\nnameserver 10.0.0.11\nsearch a.svc b.local\ndomain x\noptions ndots:5\n");
        assert_eq!(d.nameservers, ["10.0.0.10", "10.0.0.11"]);
        assert_eq!(d.search, ["a.svc", "b.local"]);
        assert_eq!(d.domain, "x");
        assert_eq!(d.options, ["ndots:5"]);
    }
}
