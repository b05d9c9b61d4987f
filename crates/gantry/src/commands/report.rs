//! `gantry report`: the ops meta-metrics for a period, as a table (default), JSON or CSV
//! (one row per bucket).

use clap::Args;
use gantry_core::report::{Rate, Report, Stat};

use crate::output::print_json;
use crate::GlobalArgs;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// One service [default: every service].
    #[arg(long)]
    service: Option<String>,
    #[arg(long, default_value = "prod")]
    env: String,
    /// Start of the period: RFC 3339, epoch seconds, or a duration ago [default: 90 days
    /// before --until].
    #[arg(long)]
    since: Option<String>,
    /// End of the period [default: now].
    #[arg(long)]
    until: Option<String>,
    /// Bucket size of the series: day, week or month.
    #[arg(long, default_value = "week")]
    by: String,
    /// One CSV row per bucket.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
}

fn duration(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "-".into();
    };
    let s = s.round() as i64;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn stat(name: &str, s: &Stat) -> String {
    format!(
        "{name:<34} mean {:>8}  median {:>8}  p90 {:>8}  n={}",
        duration(s.mean_s),
        duration(s.median_s),
        duration(s.p90_s),
        s.n
    )
}

fn rate(name: &str, r: &Rate) -> String {
    let pct = r
        .rate
        .map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "-".into());
    format!("{name:<34} {pct:>8}  ({} of {})  n={}", r.count, r.of, r.of)
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

pub async fn run(global: &GlobalArgs, a: ReportArgs) -> anyhow::Result<()> {
    let client = crate::credentials::client(global)?;
    let mut query = vec![("environment", a.env.clone()), ("by", a.by.clone())];
    if let Some(s) = &a.since {
        query.push(("since", s.clone()));
    }
    if let Some(s) = &a.service {
        query.push(("service", s.clone()));
    }
    if let Some(u) = &a.until {
        query.push(("until", u.clone()));
    }
    let r: Report = client.report(&query).await?;
    if global.json {
        return print_json(&r);
    }
    if a.csv {
        println!("bucket_start,deployments,failed_deployments,change_fail_rate,lead_time_median_s,incidents,mttd_mean_s,mttd_n,mttr_mean_s,mttr_n");
        for b in &r.buckets {
            println!(
                "{},{},{},{},{},{},{},{},{},{}",
                b.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                b.deployments,
                b.change_fail_rate.count,
                opt(b.change_fail_rate.rate),
                opt(b.lead_time.median_s),
                b.incidents,
                opt(b.mttd.mean_s),
                b.mttd.n,
                opt(b.mttr.mean_s),
                b.mttr.n
            );
        }
        return Ok(());
    }
    println!(
        "report: {} in {}, {} to {}",
        a.service.as_deref().unwrap_or("every service"),
        a.env,
        r.since.format("%Y-%m-%d %H:%M"),
        r.until.format("%Y-%m-%d %H:%M")
    );
    println!();
    println!("{}", stat("time to detect (MTTD)", &r.mttd));
    println!("{}", stat("time to resolve (MTTR)", &r.mttr));
    println!("{}", stat("impact to resolved", &r.mttr_from_impact));
    println!("{}", stat("change lead time", &r.lead_time));
    println!(
        "{:<34} {:>8}  ({} deployments)  n={}",
        "deployment frequency",
        format!("{}/day", r.deployments_per_day),
        r.deployments,
        r.deployments
    );
    println!("{}", rate("change fail rate", &r.change_fail_rate));
    println!(
        "{}",
        stat("failed deployment recovery time", &r.recovery_time)
    );
    println!("{}", rate("deployment rework rate", &r.rework_rate));
    println!();
    println!("change failure by kind:");
    for (kind, rt) in &r.change_failure_by_kind {
        println!("  {}", rate(kind, rt));
    }
    println!("incidents: {} (n={})", r.incidents, r.incidents);
    for (sev, n) in &r.incidents_by_severity {
        println!("  {sev}: {n}");
    }
    println!("incidents by cause:");
    for (cause, n) in &r.incidents_by_cause {
        println!("  {cause}: {n}");
    }
    println!(
        "{}",
        rate("share caused by changes", &r.share_caused_by_changes)
    );
    println!();
    println!("per {}:", a.by);
    println!(
        "  {:<10} {:>6} {:>8} {:>9} {:>9} {:>9}",
        "START", "DEPLOYS", "FAILED", "INCIDENTS", "MTTD", "MTTR"
    );
    for b in &r.buckets {
        println!(
            "  {:<10} {:>6} {:>8} {:>9} {:>9} {:>9}",
            b.start.format("%Y-%m-%d"),
            b.deployments,
            b.change_fail_rate.count,
            b.incidents,
            duration(b.mttd.mean_s),
            duration(b.mttr.mean_s)
        );
    }
    println!();
    println!("definitions:");
    for d in &r.definitions {
        println!("  {d}");
    }
    Ok(())
}
