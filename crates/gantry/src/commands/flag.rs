//! `gantry flag …`: feature flags from the command line. Per-environment commands read the
//! flag first and send its `ETag` back, so they never overwrite a change made in between,
//! and print only the id of the change they recorded.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use gantry_client::Client;
use gantry_client::Method;
use serde_json::{json, Value};

use crate::credentials::client;
use crate::output::{print_json, print_table};
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum FlagCommand {
    /// Create a flag of a service (off in every environment); prints its name.
    Create(CreateArgs),
    /// List flags.
    List(ListArgs),
    /// Show a flag: each environment's definition and the SDKs that registered.
    Show(FlagRef),
    /// Turn a flag on in one environment; prints the change id.
    Enable(EnvRef),
    /// Turn a flag off in one environment (a kill switch); prints the change id.
    Disable(EnvRef),
    /// Roll a flag out to a percentage of users in one environment; prints the change id.
    Rollout(RolloutArgs),
    /// Turn a flag on for some users, groups, or a constraint; prints the change id.
    Target(TargetArgs),
    /// Add, change or remove a variant; prints the change id.
    Variant(VariantArgs),
    /// Schedule an enable, disable or rollout; prints the schedule's id.
    Schedule(ScheduleArgs),
    /// Archive a flag: SDKs stop seeing it, its history stays.
    Archive(FlagRef),
    /// Restore an archived flag.
    Restore(FlagRef),
    /// Import Django waffle flags, switches and samples from a `dumpdata` JSON file.
    ImportWaffle(ImportWaffleArgs),
    /// List flags past their expected lifetime, fully on or off for long, or unused.
    Stale(StaleArgs),
    /// Evaluate Unleash client-specification files (no server needed).
    Conformance(ConformanceArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Letters, digits, `.`, `_` and `-`, at most 64 characters.
    name: String,
    #[arg(long)]
    service: String,
    /// release, experiment, operational, kill-switch or permission.
    #[arg(long = "type", default_value = "release")]
    flag_type: String,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    owner: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    service: Option<String>,
    /// Archived flags instead of live ones.
    #[arg(long)]
    archived: bool,
}

#[derive(Debug, Args)]
pub struct FlagRef {
    name: String,
    #[arg(long)]
    service: String,
}

#[derive(Debug, Args)]
pub struct EnvRef {
    name: String,
    #[arg(long)]
    service: String,
    #[arg(long)]
    env: String,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    at: EnvRef,
    /// 0 to 100.
    percent: u32,
    /// default (userId, then sessionId, then random), userId, sessionId, random, or any
    /// context field.
    #[arg(long)]
    stickiness: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["users", "groups", "constraint"])))]
pub struct TargetArgs {
    #[command(flatten)]
    at: EnvRef,
    /// User ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    users: Vec<String>,
    /// Groups (the context property `groups`), comma-separated.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// 'FIELD OPERATOR V1,V2', e.g. 'country IN no,se' or 'appVersion SEMVER_GT 2.0.0'.
    #[arg(long)]
    constraint: Option<String>,
    /// Negate the constraint.
    #[arg(long, requires = "constraint")]
    inverted: bool,
    /// Compare strings ignoring case.
    #[arg(long, requires = "constraint")]
    case_insensitive: bool,
}

#[derive(Debug, Args)]
pub struct VariantArgs {
    #[command(flatten)]
    at: EnvRef,
    variant: String,
    /// A fixed weight in thousandths; without it the variant shares what fixed ones leave.
    #[arg(long)]
    weight: Option<u32>,
    /// string, json, number or csv.
    #[arg(long, requires = "payload")]
    payload_type: Option<String>,
    #[arg(long)]
    payload: Option<String>,
    /// Remove the variant.
    #[arg(long, conflicts_with_all = ["weight", "payload"])]
    remove: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).args(["enable", "disable", "rollout"])))]
pub struct ScheduleArgs {
    name: String,
    #[arg(long)]
    service: String,
    #[arg(long)]
    env: String,
    #[arg(long)]
    enable: bool,
    #[arg(long)]
    disable: bool,
    /// Roll out to this percentage.
    #[arg(long)]
    rollout: Option<u32>,
    /// RFC 3339 (2026-12-24T18:00:00Z) or +DURATION from now (+2h).
    #[arg(long)]
    at: String,
}

#[derive(Debug, Args)]
pub struct ImportWaffleArgs {
    /// `manage.py dumpdata waffle --indent 2 > waffle.json`.
    file: PathBuf,
    /// The service the flags belong to.
    #[arg(long, required_unless_present = "dry_run")]
    service: Option<String>,
    /// The environment the imported state applies to.
    #[arg(long, required_unless_present = "dry_run")]
    env: Option<String>,
    /// Say what would be imported; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct StaleArgs {
    #[arg(long)]
    service: Option<String>,
    /// Fully on or off, or not evaluated, for longer than this many days.
    #[arg(long, default_value_t = 30)]
    days: u32,
}

#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// A directory of client-specification JSON files (with an index.json, or every
    /// *.json holding a `state`).
    dir: PathBuf,
}

pub async fn run(global: &GlobalArgs, command: FlagCommand) -> anyhow::Result<()> {
    if let FlagCommand::Conformance(args) = command {
        return conformance(&args.dir);
    }
    if let FlagCommand::ImportWaffle(args) = &command {
        if args.dry_run {
            return import_waffle(global, None, args).await;
        }
    }
    let client = client(global)?;
    match command {
        FlagCommand::Create(args) => {
            let body = json!({
                "service": args.service,
                "name": args.name,
                "type": args.flag_type,
                "description": args.description,
                "owner": args.owner,
            });
            let (flag, _) = client
                .flag_call(
                    Method::POST,
                    &["api", "v1", "flags"],
                    &[],
                    Some(&body),
                    None,
                )
                .await?;
            if global.json {
                return print_json(&flag);
            }
            println!("{}", text(&flag["name"]));
        }
        FlagCommand::List(args) => {
            let mut query = vec![("archived", args.archived.to_string())];
            if let Some(service) = &args.service {
                query.push(("service", service.clone()));
            }
            let (flags, _) = client
                .flag_call(Method::GET, &["api", "v1", "flags"], &query, None, None)
                .await?;
            if global.json {
                return print_json(&flags);
            }
            let rows: Vec<Vec<String>> = flags
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|f| {
                    vec![
                        text(&f["service"]),
                        text(&f["name"]),
                        text(&f["type"]),
                        environments_summary(&f["environments"]),
                        text(&f["owner"]),
                    ]
                })
                .collect();
            print_table(&["SERVICE", "NAME", "TYPE", "ENVIRONMENTS", "OWNER"], &rows);
        }
        FlagCommand::Show(args) => {
            let (flag, _) = client.get_flag(&args.service, &args.name).await?;
            if global.json {
                return print_json(&flag);
            }
            show(&flag);
        }
        FlagCommand::Enable(args) => {
            env_write(global, &client, &args, Method::POST, "enable", None).await?;
        }
        FlagCommand::Disable(args) => {
            env_write(global, &client, &args, Method::POST, "disable", None).await?;
        }
        FlagCommand::Rollout(args) => {
            let body = json!({"percent": args.percent, "stickiness": args.stickiness});
            env_write(
                global,
                &client,
                &args.at,
                Method::PUT,
                "rollout",
                Some(&body),
            )
            .await?;
        }
        FlagCommand::Target(args) => {
            let body = if let Some(constraint) = &args.constraint {
                json!({"constraint": parse_constraint(constraint, args.inverted, args.case_insensitive)?})
            } else if !args.users.is_empty() {
                json!({"users": args.users})
            } else {
                json!({"groups": args.groups})
            };
            env_write(
                global,
                &client,
                &args.at,
                Method::POST,
                "targets",
                Some(&body),
            )
            .await?;
        }
        FlagCommand::Variant(args) => {
            let payload = args.payload.as_ref().map(|value| {
                json!({"type": args.payload_type.as_deref().unwrap_or("string"), "value": value})
            });
            let body = json!({
                "name": args.variant,
                "weight": args.weight,
                "payload": payload,
                "remove": args.remove,
            });
            env_write(
                global,
                &client,
                &args.at,
                Method::POST,
                "variants",
                Some(&body),
            )
            .await?;
        }
        FlagCommand::Schedule(args) => {
            let (action, percent) = match (args.enable, args.disable, args.rollout) {
                (true, _, _) => ("enable", None),
                (_, true, _) => ("disable", None),
                (_, _, Some(p)) => ("rollout", Some(p)),
                _ => bail!("say what to schedule: --enable, --disable or --rollout PCT"),
            };
            let body = json!({"environment": args.env, "action": action, "percent": percent, "at": args.at});
            let (schedule, _) = client
                .flag_call(
                    Method::POST,
                    &["api", "v1", "flags", &args.service, &args.name, "schedules"],
                    &[],
                    Some(&body),
                    None,
                )
                .await?;
            if global.json {
                return print_json(&schedule);
            }
            println!("{}", text(&schedule["id"]));
        }
        FlagCommand::Archive(args) => {
            let written = client
                .flag_write(Method::POST, &args.service, &args.name, &["archive"], None)
                .await?;
            print_change(global, &written)?;
        }
        FlagCommand::Restore(args) => {
            let written = client
                .flag_write(Method::POST, &args.service, &args.name, &["restore"], None)
                .await?;
            print_change(global, &written)?;
        }
        FlagCommand::ImportWaffle(args) => import_waffle(global, Some(&client), &args).await?,
        FlagCommand::Stale(args) => {
            let mut query = vec![("days", args.days.to_string())];
            if let Some(service) = &args.service {
                query.push(("service", service.clone()));
            }
            let (stale, _) = client
                .flag_call(
                    Method::GET,
                    &["api", "v1", "flags", "stale"],
                    &query,
                    None,
                    None,
                )
                .await?;
            if global.json {
                return print_json(&stale);
            }
            let rows: Vec<Vec<String>> = stale
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .flat_map(|f| {
                    f["reasons"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .map(|reason| {
                            vec![
                                text(&f["service"]),
                                text(&f["name"]),
                                text(&f["type"]),
                                text(reason),
                            ]
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            print_table(&["SERVICE", "NAME", "TYPE", "REASON"], &rows);
        }
        FlagCommand::Conformance(_) => {}
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

async fn env_write(
    global: &GlobalArgs,
    client: &Client,
    at: &EnvRef,
    method: Method,
    action: &str,
    body: Option<&Value>,
) -> anyhow::Result<()> {
    let written = client
        .flag_write(
            method,
            &at.service,
            &at.name,
            &["environments", &at.env, action],
            body,
        )
        .await?;
    print_change(global, &written)
}

fn print_change(global: &GlobalArgs, written: &Value) -> anyhow::Result<()> {
    if global.json {
        return print_json(written);
    }
    println!("{}", text(&written["change"]));
    Ok(())
}

/// `FIELD OPERATOR V1,V2` as a constraint; single-value operators (numbers, dates,
/// semantic versions) take `value`, the others `values`.
fn parse_constraint(text: &str, inverted: bool, case_insensitive: bool) -> anyhow::Result<Value> {
    let mut parts = text.split_whitespace();
    let (Some(field), Some(operator)) = (parts.next(), parts.next()) else {
        bail!("--constraint '{text}' is not 'FIELD OPERATOR VALUES', e.g. 'country IN no,se'");
    };
    let rest: Vec<&str> = parts.collect();
    let values: Vec<String> = rest
        .join(" ")
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    let single = operator.starts_with("NUM_")
        || operator.starts_with("DATE_")
        || operator.starts_with("SEMVER_")
        || operator == "REGEX";
    let mut constraint = json!({
        "contextName": field,
        "operator": operator,
        "inverted": inverted,
        "caseInsensitive": case_insensitive,
    });
    if single {
        if values.len() != 1 {
            bail!("--constraint '{text}': {operator} compares with exactly one value");
        }
        constraint["value"] = json!(values[0]);
    } else {
        constraint["values"] = json!(values);
    }
    Ok(constraint)
}

fn environments_summary(envs: &Value) -> String {
    let Some(map) = envs.as_object() else {
        return "-".into();
    };
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(env, e)| {
            let definition = &e["definition"];
            let state = if definition["enabled"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            };
            format!("{env}:{state}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn show(flag: &Value) {
    println!(
        "flag:        {}/{}",
        text(&flag["service"]),
        text(&flag["name"])
    );
    println!("type:        {}", text(&flag["type"]));
    println!("description: {}", text(&flag["description"]));
    println!("owner:       {}", text(&flag["owner"]));
    println!(
        "created:     {} by {}",
        text(&flag["created_at"]),
        text(&flag["created_by"])
    );
    if !flag["archived_at"].is_null() {
        println!("archived:    {}", text(&flag["archived_at"]));
    }
    if let Some(envs) = flag["environments"].as_object() {
        for (env, e) in envs {
            println!();
            println!(
                "[{env}] changed {} by {}",
                text(&e["updated_at"]),
                text(&e["updated_by"])
            );
            let pretty = serde_json::to_string_pretty(&e["definition"]).unwrap_or_default();
            for line in pretty.lines() {
                println!("  {line}");
            }
        }
    }
    if let Some(sdks) = flag["sdks"].as_array().filter(|s| !s.is_empty()) {
        println!();
        println!("SDKs that registered:");
        let rows: Vec<Vec<String>> = sdks
            .iter()
            .map(|s| {
                vec![
                    text(&s["environment"]),
                    text(&s["app_name"]),
                    text(&s["instance_id"]),
                    text(&s["sdk_version"]),
                    text(&s["last_seen_at"]),
                ]
            })
            .collect();
        print_table(&["ENV", "APP", "INSTANCE", "SDK", "LAST SEEN"], &rows);
    }
}

/// Runs every case of the specification files in `dir`; exits 1 when any fails. The
/// last line is exactly `RESULT unleash_conformance passed=N failed=N`.
fn conformance(dir: &std::path::Path) -> anyhow::Result<()> {
    let files = spec_files(dir)?;
    let now = chrono::Utc::now();
    let mut rng = rand::thread_rng();
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outcome = match std::fs::read_to_string(&file) {
            Ok(spec) => gantry_flags::conformance::check_spec(&spec, now, &mut rng),
            // An unreadable file is one failed case, like one that does not parse.
            Err(e) => gantry_flags::conformance::check_spec(
                &format!("cannot read {}: {e}", file.display()),
                now,
                &mut rng,
            ),
        };
        for failure in outcome.failures() {
            println!(
                "FAIL {name}: {} ({}): expected {}, got {}",
                failure.description, failure.toggle, failure.expected, failure.actual
            );
        }
        println!(
            "{name}: {} passed, {} failed",
            outcome.passed(),
            outcome.failed()
        );
        passed += outcome.passed();
        failed += outcome.failed();
    }
    println!("RESULT unleash_conformance passed={passed} failed={failed}");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// The files `index.json` lists, or every `*.json` holding a `state` when there is none.
fn spec_files(dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let index = dir.join("index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("cannot read {}", index.display()))?;
        let names: Vec<String> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON list of file names", index.display()))?;
        return Ok(names.into_iter().map(|n| dir.join(n)).collect());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the directory {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let has_state = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v.get("state").is_some());
            if has_state {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        bail!(
            "{} has no index.json and no *.json file with a state",
            dir.display()
        );
    }
    Ok(files)
}

/// Imports waffle's flags, switches and samples, or (without a client) says what it would.
async fn import_waffle(
    global: &GlobalArgs,
    client: Option<&Client>,
    args: &ImportWaffleArgs,
) -> anyhow::Result<()> {
    let dump = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let import = gantry_flags::waffle::import_dumpdata(&dump)?;
    let keys = |what: &str, kind: Option<gantry_flags::waffle::KeyKind>| match kind {
        None => String::new(),
        Some(gantry_flags::waffle::KeyKind::PrimaryKeys) => {
            format!("; {what} named by primary key")
        }
        Some(gantry_flags::waffle::KeyKind::NaturalKeys) => {
            format!("; {what} named by natural key (--natural-foreign)")
        }
        Some(gantry_flags::waffle::KeyKind::Mixed) => {
            format!("; {what} named by primary and natural keys")
        }
    };
    eprintln!(
        "read {} flags from {}{}{}",
        import.flags.len(),
        args.file.display(),
        keys("users", import.user_keys),
        keys("groups", import.group_keys),
    );
    eprintln!(
        "percentage rollouts are re-bucketed by deterministic hashing: a user may land on the other side of a percentage than under waffle"
    );
    for skipped in &import.not_imported {
        eprintln!(
            "not imported: {} {}: {}",
            skipped.flag, skipped.attribute, skipped.detail
        );
    }
    let Some(client) = client else {
        if global.json {
            return print_json(&import.flags);
        }
        for flag in &import.flags {
            println!(
                "{} ({}): {}",
                flag.name,
                flag.kind.as_str(),
                serde_json::to_string(&flag.definition)?
            );
        }
        return Ok(());
    };
    let (Some(service), Some(env)) = (&args.service, &args.env) else {
        bail!("--service and --env are required unless --dry-run");
    };
    for flag in &import.flags {
        let body = json!({
            "service": service,
            "name": flag.name,
            "type": flag.kind.as_str(),
            "description": flag.note,
        });
        match client
            .flag_call(
                Method::POST,
                &["api", "v1", "flags"],
                &[],
                Some(&body),
                None,
            )
            .await
        {
            Ok(_) => {}
            Err(gantry_client::ClientError::Api { status, .. })
                if status == gantry_client::StatusCode::CONFLICT =>
            {
                eprintln!(
                    "flag '{}' exists already; setting its {env} definition",
                    flag.name
                );
            }
            Err(e) => return Err(e.into()),
        }
        let definition = serde_json::to_value(&flag.definition)?;
        let written = client
            .flag_write(
                Method::PUT,
                service,
                &flag.name,
                &["environments", env],
                Some(&definition),
            )
            .await?;
        println!("{}", text(&written["change"]));
    }
    Ok(())
}
