//! The command line: kubectl's verbs and flags for the kinds oxivirt serves.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "oxivirt",
    version,
    about = "Manage oxivirt (or KubeVirt) virtual machines, their networks and pods: kubectl's verbs against oxivirtd or any Kubernetes cluster",
    after_help = "Examples:\n  oxivirt apply -f examples/seed/\n  oxivirt get vm\n  oxivirt describe vm testvm-2\n\nThe kubeconfig is --kubeconfig, else KUBECONFIG, else oxivirtd's ${OXIVIRT_DATA_DIR:-/var/lib/oxivirt}/kubeconfig when it exists, else ~/.kube/config."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Path to the kubeconfig file to use.
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update objects from files, directories or stdin.
    #[command(
        after_help = "Examples:\n  # Create the seed's network and VM (a directory's .yaml, .yml and .json files, sorted)\n  oxivirt apply -f examples/seed/\n\n  # From stdin, into another namespace\n  cat vm.yaml | oxivirt apply -n tenant-a -f -"
    )]
    Apply(ApplyArgs),
    /// Display one or many objects.
    #[command(
        after_help = "Examples:\n  # The VMs in the current namespace, as the server's table\n  oxivirt get vm\n\n  # One VM as YAML; every VMI in every namespace; NADs by name only\n  oxivirt get vm testvm-2 -o yaml\n  oxivirt get vmi -A -o wide\n  oxivirt get net-attach-def -o name\n\n  # Watch the VMs change\n  oxivirt get vm -w"
    )]
    Get(GetArgs),
    /// Show the details of an object and its events.
    #[command(
        after_help = "Examples:\n  oxivirt describe vm testvm-2\n  oxivirt describe nad multus-br -n default"
    )]
    Describe(DescribeArgs),
    /// Delete objects by kind and name, or those in files.
    #[command(
        after_help = "Examples:\n  # Delete a VM and wait until it is gone\n  oxivirt delete vm testvm-2\n\n  # Delete what a file created, right away, without waiting\n  oxivirt delete -f examples/seed/vm-2.yaml --now --wait=false"
    )]
    Delete(DeleteArgs),
    /// Start a virtual machine (virtctl start).
    #[command(
        after_help = "Examples:\n  oxivirt start testvm-2\n\n  # Start it with the guest paused\n  oxivirt start testvm-2 --paused"
    )]
    Start(StartArgs),
    /// Stop a virtual machine (virtctl stop).
    #[command(
        after_help = "Examples:\n  oxivirt stop testvm-2\n\n  # Stop it now, without waiting for the guest to shut down\n  oxivirt stop testvm-2 --force --grace-period 0"
    )]
    Stop(StopArgs),
    /// Restart a virtual machine (virtctl restart).
    #[command(
        after_help = "Examples:\n  oxivirt restart testvm-2\n\n  # Restart it without waiting for the guest\n  oxivirt restart testvm-2 --force --grace-period 0"
    )]
    Restart(RestartArgs),
    /// Pause a virtual machine's guest (virtctl pause vm|vmi).
    #[command(after_help = "Examples:\n  oxivirt pause vm testvm-2\n  oxivirt pause vmi testvm-2")]
    Pause(PauseArgs),
    /// Resume a paused guest (virtctl unpause vm|vmi).
    #[command(
        after_help = "Examples:\n  oxivirt unpause vm testvm-2\n  oxivirt unpause vmi testvm-2"
    )]
    Unpause(PauseArgs),
    /// Connect to a virtual machine's serial console (virtctl console); ^] leaves.
    #[command(after_help = "Examples:\n  oxivirt console testvm-2")]
    Console(ConsoleArgs),
    /// Print the shell completion script.
    #[command(
        after_help = "Examples:\n  # bash, for this shell and for every new one\n  source <(oxivirt completion bash)\n  oxivirt completion bash > /etc/bash_completion.d/oxivirt\n\n  # zsh\n  oxivirt completion zsh > \"${fpath[1]}/_oxivirt\"\n\n  # fish\n  oxivirt completion fish > ~/.config/fish/completions/oxivirt.fish"
    )]
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A file, a directory or `-` for stdin (repeatable).
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The kind (`vm`, `vmi`, `net-attach-def`/`nad`, `pods`, `ns`, `events`…) or KIND/NAME.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Names of objects; all when none.
    pub names: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector (`key=value,…`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector (`metadata.name=x`).
    #[arg(long)]
    pub field_selector: Option<String>,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The kind, or KIND/NAME.
    #[arg(value_name = "TYPE")]
    pub kind: String,
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The kind, or KIND/NAME (or use -f).
    #[arg(value_name = "TYPE", required_unless_present = "files")]
    pub kind: Option<String>,
    pub names: Vec<String>,
    /// Delete the objects in these files, directories or stdin (`-`).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Wait until the objects are gone (finalizers done) before returning.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// Give up waiting after this long (`30s`, `2m`; 0 waits as long as it takes).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Seconds the object is given to terminate (passed to the server; -1 its default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Terminate right away (a grace period of 1 second).
    #[arg(long)]
    pub now: bool,
    /// A missing object is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// The grace period flags take -1 for "not given", as virtctl's do.
pub const NO_GRACE_PERIOD: i64 = -1;

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The VirtualMachine.
    pub name: String,
    /// Start the guest paused.
    #[arg(long)]
    pub paused: bool,
    /// Only check the request: nothing changes.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The VirtualMachine.
    pub name: String,
    /// Seconds the guest gets to shut down (with --force).
    #[arg(long, default_value_t = NO_GRACE_PERIOD, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Stop with --grace-period rather than the VMI's own.
    #[arg(long)]
    pub force: bool,
    /// Only check the request: nothing changes.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The VirtualMachine.
    pub name: String,
    /// With --force: 0, the only grace period a force restart takes.
    #[arg(long, default_value_t = NO_GRACE_PERIOD, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Restart without waiting for the guest (with --grace-period 0).
    #[arg(long)]
    pub force: bool,
    /// Only check the request: nothing changes.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// `vm` (`virtualmachine`) or `vmi` (`virtualmachineinstance`).
    #[arg(value_name = "TYPE", value_parser = ["vm", "virtualmachine", "vmi", "virtualmachineinstance"], ignore_case = true)]
    pub kind: String,
    pub name: String,
    /// Only check the request: nothing changes.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The VirtualMachineInstance (a VM's has the VM's name).
    pub name: String,
}

/// `500ms`, `30s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("invalid duration {s:?}: use ms, s, m or h")),
    };
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent_and_every_verb_has_an_example() {
        Cli::command().debug_assert();
        for sub in Cli::command().get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("oxivirt "),
                "{} has no example",
                sub.get_name()
            );
        }
    }

    #[test]
    fn delete_flags_like_kubectl() {
        let cli = Cli::try_parse_from(["oxivirt", "delete", "vm", "a", "--wait=false", "--now"])
            .expect("parse");
        let Command::Delete(d) = cli.command else {
            panic!("not delete")
        };
        assert!(!d.wait && d.now);
        let cli = Cli::try_parse_from(["oxivirt", "delete", "-f", "x.yaml", "--grace-period", "0"])
            .expect("parse");
        let Command::Delete(d) = cli.command else {
            panic!("not delete")
        };
        assert!(d.wait && d.grace_period == 0 && d.kind.is_none());
        assert!(Cli::try_parse_from(["oxivirt", "delete"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("30s"),
            Ok(std::time::Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("2m"),
            Ok(std::time::Duration::from_secs(120))
        );
        assert_eq!(parse_duration("5"), Ok(std::time::Duration::from_secs(5)));
        assert!(parse_duration("x").is_err());
    }
}
