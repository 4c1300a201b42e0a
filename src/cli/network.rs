//! `network …` and `port`.

use super::format;
use crate::engine::{Engine, EngineError};
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a bridge network
    Create(CreateNet),
    /// List networks
    #[command(alias = "list")]
    Ls(LsNet),
    /// Show networks as JSON (subnet, gateway, containers)
    Inspect { networks: Vec<String> },
    /// Remove networks (no container may use them)
    #[command(alias = "remove")]
    Rm { networks: Vec<String> },
    /// Remove every user-defined network no container uses
    Prune {
        /// Do not prompt (there is no prompt; accepted for Docker compatibility)
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Connect a container to a network
    Connect(ConnectNet),
    /// Disconnect a container from a network
    Disconnect {
        network: String,
        container: String,
        /// Accepted for Docker compatibility
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct CreateNet {
    /// Driver: bridge (host and none are pre-defined)
    #[arg(short = 'd', long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR form, e.g. 10.90.0.0/24
    #[arg(long)]
    subnet: Option<String>,
    /// Gateway (the bridge's address); default: the subnet's first address
    #[arg(long)]
    gateway: Option<String>,
    name: String,
}

#[derive(Args, Debug)]
pub struct LsNet {
    /// Only IDs
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate IDs
    #[arg(long)]
    no_trunc: bool,
    /// table, json, or a Go-style template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args, Debug)]
pub struct ConnectNet {
    /// Network-scoped alias
    #[arg(long)]
    alias: Vec<String>,
    /// IPv4 address
    #[arg(long)]
    ip: Option<String>,
    network: String,
    container: String,
}

/// Run `f` on every item, printing what it returns or its error; 1 if any failed.
pub(super) fn each<T>(
    items: &[String],
    f: impl Fn(&str) -> Result<T, EngineError>,
    show: impl Fn(T),
) -> i32 {
    let mut code = 0;
    for i in items {
        match f(i) {
            Ok(v) => show(v),
            Err(e) => {
                Engine::warn(&format!("twinbox: {}", crate::monitor::error_chain(&e)));
                code = 1;
            }
        }
    }
    code
}

pub fn network_command(engine: &Engine, c: NetworkCommand) -> Result<i32, EngineError> {
    match c {
        NetworkCommand::Create(a) => {
            let n = engine.network_create(
                &a.name,
                &a.driver,
                a.subnet.as_deref(),
                a.gateway.as_deref(),
            )?;
            println!("{}", n.id);
            Ok(0)
        }
        NetworkCommand::Ls(a) => {
            let mut rows = engine.network_list()?;
            if !a.no_trunc {
                for r in &mut rows {
                    r.id.truncate(12);
                }
            }
            if a.quiet {
                for r in &rows {
                    println!("{}", r.id);
                }
                return Ok(0);
            }
            format::print_rows(
                a.format.as_deref(),
                &rows,
                &["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET"],
                |r| {
                    vec![
                        r.id.clone(),
                        r.name.clone(),
                        r.driver.clone(),
                        r.scope.clone(),
                        r.subnet.clone(),
                    ]
                },
            );
            Ok(0)
        }
        NetworkCommand::Inspect { networks } => {
            if networks.is_empty() {
                return Err(EngineError::Invalid(
                    "network inspect needs at least one network".into(),
                ));
            }
            let out = std::cell::RefCell::new(Vec::new());
            let code = each(
                &networks,
                |n| engine.network_inspect(n),
                |v| out.borrow_mut().push(v),
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&out.into_inner()).unwrap_or_else(|_| "[]".into())
            );
            Ok(code)
        }
        NetworkCommand::Rm { networks } => {
            if networks.is_empty() {
                return Err(EngineError::Invalid(
                    "network rm needs at least one network".into(),
                ));
            }
            Ok(each(
                &networks,
                |n| engine.network_remove(n),
                |n| println!("{n}"),
            ))
        }
        NetworkCommand::Prune { .. } => {
            let gone = engine.network_prune()?;
            if !gone.is_empty() {
                println!("Deleted Networks:");
                for n in gone {
                    println!("{n}");
                }
            }
            Ok(0)
        }
        NetworkCommand::Connect(a) => {
            engine.network_connect(&a.network, &a.container, a.alias, a.ip.as_deref())?;
            Ok(0)
        }
        NetworkCommand::Disconnect {
            network, container, ..
        } => {
            engine.network_disconnect(&network, &container)?;
            Ok(0)
        }
    }
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub fn port(engine: &Engine, container: &str, private: Option<&str>) -> Result<i32, EngineError> {
    let rec = engine.get(container)?;
    let want = private.map(|p| {
        let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        (port.to_string(), proto.to_string())
    });
    let maps: Vec<_> = rec
        .state
        .ports
        .iter()
        .filter(|_| rec.is_active())
        .filter(|m| match &want {
            Some((p, proto)) => m.container_port.to_string() == *p && m.proto == *proto,
            None => true,
        })
        .collect();
    if let (Some(p), true) = (private, maps.is_empty()) {
        return Err(EngineError::Invalid(format!(
            "no public port '{p}' published for {}",
            rec.name
        )));
    }
    for m in maps {
        if want.is_some() {
            println!(
                "{}:{}",
                m.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                m.host_port
            );
        } else {
            println!("{m}");
        }
    }
    Ok(0)
}
