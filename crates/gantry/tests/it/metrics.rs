//! The metrics path through the real binary: StatsD and Graphite in, the Graphite render
//! API out, as Grafana calls it.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Options, Server};

/// A server whose StatsD flushes every second and whose store fsyncs every 0.2 s.
fn metrics_server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(
        &config,
        "[statsd]\nflush_interval_secs = 1\n[storage]\nfsync_interval_secs = 0.2\n",
    )
    .unwrap();
    let server = Server::start_with(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    (server, dir)
}

fn listener(server: &Server, protocol: &str) -> String {
    let status = server.http().get("/api/v1/status").body;
    status["listeners"][protocol]
        .as_str()
        .unwrap_or_else(|| panic!("{protocol} in {status}"))
        .to_string()
}

/// Polls `/render` until `check` accepts the answer (flushes are asynchronous).
fn render_until(
    server: &Server,
    query: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = server.http().get(&format!("/render?{query}"));
        assert_eq!(reply.status, 200, "{}", reply.text);
        if check(&reply.body) {
            return reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "render never satisfied the check: {}",
            reply.text
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn total(body: &serde_json::Value) -> f64 {
    body[0]["datapoints"].as_array().map_or(0.0, |points| {
        points.iter().filter_map(|p| p[0].as_f64()).sum()
    })
}

#[test]
fn statsd_counts_reach_the_graph() {
    let (server, _dir) = metrics_server();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let statsd = listener(&server, "statsd");
    // Good and bad lines in one datagram: the good ones count.
    socket
        .send_to(
            b"shop.checkout:3|c\nshop.checkout:oops|c\nshop.checkout:2|c|@0.5\nshop.load:7|g",
            &statsd,
        )
        .unwrap();
    let body = render_until(
        &server,
        "target=stats_counts.shop.checkout&from=-5min",
        |b| total(b) >= 7.0,
    );
    assert_eq!(total(&body), 7.0, "3 + 2 / 0.5");
    assert_eq!(body[0]["target"], "stats_counts.shop.checkout");
    let gauge = render_until(&server, "target=stats.gauges.shop.load&from=-5min", |b| {
        total(b) > 0.0
    });
    assert!(gauge[0]["datapoints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p[0] == 7.0));
    let bad = render_until(
        &server,
        "target=stats_counts.statsd.bad_lines_seen&from=-5min",
        |b| total(b) >= 1.0,
    );
    assert_eq!(total(&bad), 1.0);
    // Over TCP too.
    let mut tcp = TcpStream::connect(&statsd).unwrap();
    tcp.write_all(b"shop.tcp:5|c\n").unwrap();
    drop(tcp);
    render_until(&server, "target=stats_counts.shop.tcp&from=-5min", |b| {
        total(b) >= 5.0
    });
}

#[test]
fn graphite_plaintext_and_pickle_reach_the_graph() {
    let (server, _dir) = metrics_server();
    let now = chrono::Utc::now().timestamp();
    let mut tcp = TcpStream::connect(listener(&server, "graphite")).unwrap();
    let lines = format!(
        "web.host1.cpu 10 {a}\nweb.host2.cpu 30 {a}\nnot a line\nweb.host1.cpu NaN {a}\ncpu;host=web1;dc=eu 5 {a}\nweb.host3.cpu 1",
        a = now - 30
    );
    tcp.write_all(lines.as_bytes()).unwrap();
    drop(tcp); // the last line is half a line: dropped, counted
    let body = render_until(&server, "target=sumSeries(web.*.cpu)&from=-5min", |b| {
        total(b) >= 40.0
    });
    assert_eq!(body[0]["target"], "sumSeries(web.*.cpu)");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        format!("udp.metric 4 {}\n", now - 20).as_bytes(),
        listener(&server, "graphite"),
    )
    .unwrap();
    render_until(&server, "target=udp.metric&from=-5min", |b| total(b) >= 4.0);

    // Pickle: a good frame is stored; a frame that would run code closes that connection
    // and the server keeps serving.
    let pickle = listener(&server, "pickle");
    let payload = format!(
        "(lp0\n(S'pickled.metric'\np1\n(I{}\nF2.5\ntp2\ntp3\na.",
        now - 20
    );
    let mut stream = TcpStream::connect(&pickle).unwrap();
    stream
        .write_all(&(payload.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(payload.as_bytes()).unwrap();
    render_until(&server, "target=pickled.metric&from=-5min", |b| {
        total(b) >= 2.5
    });
    let evil = b"cos\nsystem\n(S'echo pwned'\ntR.";
    stream
        .write_all(&(evil.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(evil).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.log_text().contains("forbidden"),
        "the refusal is logged"
    );
    assert_eq!(server.http().get("/readyz").status, 200);

    let metrics = server.http().get("/metrics").text;
    assert!(
        metrics.contains("gantry_pickle_connections_refused_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gantry_graphite_bad_lines_total 3"),
        "not a line, NaN, half a line: {metrics}"
    );
}

/// The allocator's own figures are on /metrics, and they are consistent: what is allocated
/// lies in active pages, which are resident.
#[test]
fn allocator_figures_on_metrics() {
    let (server, _dir) = metrics_server();
    let metrics = server.http().get("/metrics").text;
    let gauge = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"));
        line[name.len() + 1..].parse().unwrap()
    };
    let allocated = gauge("gantry_memory_allocated_bytes");
    let active = gauge("gantry_memory_active_bytes");
    let resident = gauge("gantry_memory_resident_bytes");
    assert!(allocated > 0 && gauge("gantry_memory_metadata_bytes") > 0);
    assert!(allocated <= active && active <= resident, "{metrics}");
    assert!(metrics.contains("# TYPE gantry_memory_resident_bytes gauge"));
    // The store's own share, by part.
    for part in ["index", "rollup", "queue"] {
        assert!(
            metrics.contains(&format!("gantry_tsdb_memory_bytes{{part=\"{part}\"}} ")),
            "{metrics}"
        );
    }
    gauge("gantry_tsdb_series");
}

/// What Grafana's Graphite data source sends, replayed.
#[test]
fn grafana_replay() {
    let (server, _dir) = metrics_server();
    let now = chrono::Utc::now().timestamp();
    let mut tcp = TcpStream::connect(listener(&server, "graphite")).unwrap();
    for host in ["web1", "web2"] {
        for i in 0..6 {
            writeln!(
                tcp,
                "stats.timers.{host}.latency.mean {} {}",
                100 + i,
                now - 60 + 10 * i
            )
            .unwrap();
            writeln!(tcp, "cpu;host={host};dc=eu {} {}", i, now - 60 + 10 * i).unwrap();
        }
    }
    drop(tcp);
    let http = server.http();
    // Health check: constantLine(100).
    let health = http.get("/render?target=constantLine(100)&from=-5min&until=now&format=json");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.body[0]["target"], "100.0",
        "graphite-web names it by the float"
    );
    render_until(
        &server,
        "target=stats.timers.*.latency.mean&from=-5min",
        |b| b.as_array().is_some_and(|a| a.len() == 2),
    );

    // A form-encoded POST wrapped in aliasSub, with maxDataPoints, as Grafana sends a panel.
    let form = "target=aliasSub(stats.timers.*.latency.mean%2C%20%27%5Estats%5C.timers%5C.(%5B%5E.%5D*)%5C..*%27%2C%20%27%5C1%27)&from=-10min&until=now&format=json&maxDataPoints=1000";
    let reply = http
        .client
        .post(format!("{}/render", server.url()))
        .basic_auth("grafana", Some(server.admin_token()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let series: serde_json::Value = reply.json().unwrap();
    let targets: Vec<&str> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, vec!["web1", "web2"]);
    assert!(
        series[0]["datapoints"][0].as_array().unwrap().len() == 2,
        "[value, timestamp] pairs"
    );

    let find = http.get("/metrics/find?query=stats.timers.*");
    assert_eq!(
        find.body,
        json!([
            {"allowChildren": 1, "expandable": 1, "leaf": 0, "id": "stats.timers.web1", "text": "web1", "context": {}},
            {"allowChildren": 1, "expandable": 1, "leaf": 0, "id": "stats.timers.web2", "text": "web2", "context": {}},
        ])
    );
    let completer = http.get("/metrics/find?query=stats.timers.web1.latency.*&format=completer");
    assert_eq!(completer.body["metrics"][0]["is_leaf"], "1");
    let expand = http.get("/metrics/expand?query=stats.timers.*.latency.mean&leavesOnly=1");
    assert_eq!(expand.body["results"].as_array().unwrap().len(), 2);
    assert!(
        http.get("/metrics/index.json")
            .body
            .as_array()
            .unwrap()
            .len()
            >= 4
    );

    assert_eq!(
        http.get("/tags").body,
        json!([{"tag": "dc"}, {"tag": "host"}, {"tag": "name"}])
    );
    assert_eq!(
        http.get("/tags/autoComplete/tags?tagPrefix=h").body,
        json!(["host"])
    );
    assert_eq!(
        http.get("/tags/autoComplete/values?tag=host").body,
        json!(["web1", "web2"])
    );
    assert_eq!(
        http.get("/tags/findSeries?expr=host%3Dweb2").body,
        json!(["cpu;dc=eu;host=web2"])
    );
    let by_tag = render_until(
        &server,
        "target=seriesByTag('name=cpu','host=~web1')&from=-5min",
        |b| b.as_array().is_some_and(|a| a.len() == 1),
    );
    assert_eq!(by_tag[0]["tags"]["host"], "web1");

    let functions = http.get("/functions").body;
    for name in [
        "aliasSub",
        "constantLine",
        "sumSeries",
        "movingAverage",
        "seriesByTag",
    ] {
        assert_eq!(functions[name]["name"], name, "{name}");
    }
    assert_eq!(http.get("/version").text, "1.1.10");

    // Errors name the problem and its position.
    let bad = http.get("/render?target=sumSeriez(a.b)&from=-5min");
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["message"]
            .as_str()
            .unwrap()
            .contains("unknown function 'sumSeriez' at position 0"),
        "{}",
        bad.text
    );
    let unbalanced = http.get("/render?target=sumSeries(a.b&from=-5min");
    assert_eq!(unbalanced.status, 400);
    assert!(
        unbalanced.body["message"]
            .as_str()
            .unwrap()
            .contains("never closed"),
        "{}",
        unbalanced.text
    );
    // No token, no graphs (unless anonymous_read).
    assert_eq!(
        crate::harness::Http::new(&server.url(), None)
            .get("/render?target=a")
            .status,
        401
    );
}

#[test]
fn deploy_lines_on_graphs() {
    let (server, _dir) = metrics_server();
    crate::harness::record(&server, "shop", "prod", "Deploy shop 9");
    let body = render_until(
        &server,
        "target=drawAsInfinite(events('shop'))&from=-10min",
        |b| {
            b[0]["datapoints"]
                .as_array()
                .is_some_and(|p| p.iter().any(|v| v[0].as_f64().is_some()))
        },
    );
    assert_eq!(
        body[0]["target"], "drawAsInfinite(events(\"shop\"))",
        "graphite-web's name"
    );
}

#[test]
fn anonymous_read_opens_the_graphite_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(&config, "[auth]\nanonymous_read = true\n").unwrap();
    let server = Server::start_with(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let anonymous = crate::harness::Http::new(&server.url(), None);
    assert_eq!(
        anonymous
            .get("/render?target=constantLine(1)&from=-1h")
            .status,
        200
    );
    assert_eq!(anonymous.get("/events/get_data?from=-1h").status, 200);
    assert_eq!(
        anonymous.get("/api/v1/changes").status,
        401,
        "only the Graphite reads open up"
    );
}

#[test]
fn list_and_delete_series_from_the_cli() {
    let (server, _dir) = metrics_server();
    let now = chrono::Utc::now().timestamp();
    let mut tcp = TcpStream::connect(listener(&server, "graphite")).unwrap();
    for name in ["old.a", "old.b", "keep.me"] {
        writeln!(tcp, "{name} 1 {}", now - 30).unwrap();
    }
    drop(tcp);
    render_until(&server, "target=keep.me&from=-5min", |b| total(b) >= 1.0);
    // StatsD's own series may appear too (it flushes every second); look only at ours.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.ok(&["metrics", "list", "old.*"]).lines().count() < 2 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.ok(&["metrics", "list"]).contains("keep.me\n"));
    assert_eq!(server.ok(&["metrics", "list", "old.*"]), "old.a\nold.b\n");
    assert_eq!(server.ok(&["metrics", "delete", "old.*"]), "old.a\nold.b\n");
    assert_eq!(server.ok(&["metrics", "list", "old.*"]), "");
    assert_eq!(server.ok(&["metrics", "list", "keep.*"]), "keep.me\n");
    let out = server.cli(&["metrics", "compact"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("compacted"));
    assert_eq!(server.ok(&["metrics", "list", "keep.*"]), "keep.me\n");
    render_until(&server, "target=keep.me&from=-5min", |b| total(b) >= 1.0);
    let refused = server.http().delete("/api/v1/metrics");
    assert_eq!(refused.status, 400);
    assert!(refused.body["message"]
        .as_str()
        .unwrap()
        .contains("pattern is required"));
}

#[test]
fn collect_sends_drop_files() {
    let (server, _dir) = metrics_server();
    let drop = tempfile::tempdir().unwrap();
    std::fs::write(drop.path().join("app"), "queue.depth=12\nnot a metric\n").unwrap();
    for (flag, protocol, prefix) in [
        ("--graphite", "graphite", "hostg"),
        ("--statsd", "statsd", "hosts"),
    ] {
        let out = std::process::Command::new(crate::harness::BIN)
            .args([
                "collect",
                "--once",
                "--prefix",
                prefix,
                flag,
                &listener(&server, protocol),
                "--dir",
            ])
            .arg(drop.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(":2: skipped 'not a metric': not key=value"),
            "{err}"
        );
    }
    render_until(&server, "target=hostg.queue.depth&from=-5min", |b| {
        total(b) >= 12.0
    });
    render_until(
        &server,
        "target=stats.gauges.hosts.queue.depth&from=-5min",
        |b| total(b) >= 12.0,
    );
}

/// `[metrics.forward]`: points go on to a Graphite destination; while it is down they wait
/// in the on-disk queue and arrive, in order, once it is back.
#[test]
fn forwards_to_graphite_and_queues_while_down() {
    // A port with nobody on it yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gantry.toml");
    std::fs::write(
        &config,
        format!("[statsd]\nflush_interval_secs = 1\n[metrics.forward]\ndestinations = [\"127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    let server = Server::start_with(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Default::default()
    });
    let now = chrono::Utc::now().timestamp();
    let mut tcp = TcpStream::connect(listener(&server, "graphite")).unwrap();
    writeln!(tcp, "fwd.first 1 {}", now - 20).unwrap();
    writeln!(tcp, "fwd.second 2 {}", now - 10).unwrap();
    drop(tcp);
    render_until(&server, "target=fwd.second&from=-5min", |b| total(b) >= 2.0);
    std::thread::sleep(Duration::from_millis(1500));

    // The destination comes up; the queue drains into it.
    let destination = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (stream, _) = destination.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut received = String::new();
    let mut reader = std::io::BufReader::new(stream);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(received.contains("fwd.first 1 ") && received.contains("fwd.second 2 ")) {
        assert!(Instant::now() < deadline, "forwarded so far: {received}");
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
            break;
        }
        received.push_str(&line);
    }
    let first = received.find("fwd.first").unwrap();
    let second = received.find("fwd.second").unwrap();
    assert!(first < second, "in order: {received}");
    assert!(
        received.contains(&format!("fwd.first 1 {}", now - 20)),
        "{received}"
    );
}

/// `[metrics.remote_read]`: a server reads graphs from another Graphite API merged with its
/// own store (here the other is a second Gantry open for anonymous reads).
#[test]
fn remote_read_merges_a_cluster() {
    let remote_dir = tempfile::tempdir().unwrap();
    let remote_config = remote_dir.path().join("remote.toml");
    std::fs::write(
        &remote_config,
        "[auth]\nanonymous_read = true\n[storage]\nfsync_interval_secs = 0.2\n",
    )
    .unwrap();
    let remote = Server::start_with(Options {
        extra_args: vec!["--config".into(), remote_config.display().to_string()],
        ..Default::default()
    });
    let (local_config_dir, local_config) = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.toml");
        std::fs::write(
            &path,
            format!(
                "[storage]\nfsync_interval_secs = 0.2\n[metrics.remote_read]\nurl = \"{}\"\n",
                remote.url()
            ),
        )
        .unwrap();
        (dir, path)
    };
    let local = Server::start_with(Options {
        extra_args: vec!["--config".into(), local_config.display().to_string()],
        ..Default::default()
    });
    let now = chrono::Utc::now().timestamp();
    let mut tcp = TcpStream::connect(listener(&remote, "graphite")).unwrap();
    writeln!(tcp, "cluster.web1.cpu 7 {}", now - 20).unwrap();
    drop(tcp);
    let mut tcp = TcpStream::connect(listener(&local, "graphite")).unwrap();
    writeln!(tcp, "cluster.web2.cpu 5 {}", now - 20).unwrap();
    drop(tcp);
    let body = render_until(&local, "target=sumSeries(cluster.*.cpu)&from=-5min", |b| {
        total(b) >= 12.0
    });
    assert_eq!(total(&body), 12.0, "local 5 + remote 7");
    let find = local.http().get("/metrics/find?query=cluster.*");
    let ids: Vec<&str> = find
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["cluster.web1", "cluster.web2"]);
    drop(local_config_dir);
}

/// A 64 KB datagram with bad and non-UTF-8 lines in it: every good line counts.
#[test]
fn a_full_size_datagram_with_bad_lines() {
    let (server, _dir) = metrics_server();
    let mut datagram = Vec::new();
    let mut good = 0;
    while datagram.len() < 65_000 {
        datagram.extend_from_slice(b"big.packet:1|c\n");
        good += 1;
        if good % 1000 == 0 {
            datagram.extend_from_slice(b"big.packet:NaN|c\nbig\xff\xfe.packet:1|c\n");
            good += 1; // the non-UTF-8 key is cleaned to big.packet and counts
        }
    }
    assert!(datagram.len() <= 65_507);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(&datagram, listener(&server, "statsd"))
        .unwrap();
    let body = render_until(&server, "target=stats_counts.big.packet&from=-5min", |b| {
        total(b) >= good as f64
    });
    assert_eq!(total(&body), good as f64);
    let bad = render_until(
        &server,
        "target=stats_counts.statsd.bad_lines_seen&from=-5min",
        |b| total(b) >= 4.0,
    );
    assert_eq!(total(&bad), 4.0);
    assert_eq!(server.http().get("/readyz").status, 200);
}
