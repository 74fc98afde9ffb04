//! `fastblock-mon --check-config`: example files pass; every kind of bad file is a one-line
//! error naming the key and line, with exit code 2.

mod common;

use common::run_bin;

const MON: &str = env!("CARGO_BIN_EXE_fastblock-mon");

fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitor.toml");
    std::fs::write(&path, text).unwrap();
    let conf = format!("-conf={}", path.display());
    let (code, out, err) = run_bin(MON, &[&conf, "--check-config"], &[]);
    // Normalise the temp path so assertions can name the file simply.
    let err = err.replace(&path.display().to_string(), "monitor.toml");
    (code, out, err)
}

#[test]
fn example_configs_pass_check_config() {
    for f in [
        "config/monitor.toml",
        "config/cluster/monitor1.toml",
        "config/cluster/monitor2.toml",
        "config/cluster/monitor3.toml",
    ] {
        let path = format!("{}/{f}", env!("CARGO_MANIFEST_DIR"));
        let (code, out, err) = run_bin(MON, &["--conf", &path, "--check-config"], &[]);
        assert_eq!(code, 0, "{f}: {err}");
        assert!(out.contains("configuration OK"), "{out}");
    }
}

#[test]
fn bad_configs_are_one_line_errors_with_key_and_line() {
    let base = "hostname = \"m1\"\ndata_dir = \"/tmp/x\"\n";
    let cases = [
        (
            format!("{base}colour = \"blue\"\n"),
            "fastblock-mon: monitor.toml:3: unknown key 'colour'",
        ),
        (
            format!("{base}port = \"3333\"\n"),
            "fastblock-mon: monitor.toml:3: port: invalid type: string \"3333\", expected an integer",
        ),
        (
            format!("{base}prometheus_port = 65536\n"),
            "fastblock-mon: monitor.toml:3: prometheus_port: 65536 is out of range 1..=65535",
        ),
        (
            format!("{base}etcd_listen_peer_urls = [\"ftp://127.0.0.1:2380\"]\n"),
            "fastblock-mon: monitor.toml:3: etcd_listen_peer_urls: 'ftp://127.0.0.1:2380' must use http:// or https://",
        ),
        (
            format!(
                "{base}etcd_name = \"m4\"\netcd_initial_cluster = \"m1=http://127.0.0.1:2380\"\n"
            ),
            "fastblock-mon: monitor.toml:4: etcd_initial_cluster: member 'm4' (etcd_name) is not listed",
        ),
        (
            format!("{base}log_level = \"verbose\"\n"),
            "fastblock-mon: monitor.toml:3: log_level: unknown value `verbose`, expected one of `error`, `warn`, `info`, `debug`, `trace`",
        ),
    ];
    for (text, expected) in cases {
        let (code, _, err) = check(&text);
        assert_eq!(code, 2, "{text}");
        assert_eq!(err.lines().count(), 1, "one line expected: {err}");
        assert_eq!(err.trim_end(), expected, "{text}");
    }
}

#[test]
fn values_out_of_range_and_duplicate_keys_are_one_line_errors() {
    let base = "hostname = \"m1\"\ndata_dir = \"/tmp/x\"\n";
    let cases = [
        // Validated before, then the daemon looped on etcd's "too large lease TTL".
        (
            format!("{base}election_lease_ttl = \"100000000000s\"\n"),
            "fastblock-mon: monitor.toml:3: election_lease_ttl: '100000000000s' is out of range 2s..=1m",
        ),
        (
            format!("{base}election_lease_ttl = \"61s\"\n"),
            "fastblock-mon: monitor.toml:3: election_lease_ttl: '61s' is out of range 2s..=1m",
        ),
        (
            format!("{base}osd_down_after = \"0s\"\n"),
            "fastblock-mon: monitor.toml:3: osd_down_after: '0s' is out of range 1s..=1h",
        ),
        (
            format!("{base}osd_out_after = \"8days\"\n"),
            "fastblock-mon: monitor.toml:3: osd_out_after: '8days' is out of range 1s..=7days",
        ),
        (
            format!("{base}watch_progress_every = \"1ns\"\n"),
            "fastblock-mon: monitor.toml:3: watch_progress_every: '1ns' is out of range 100ms..=5m",
        ),
        (
            format!("{base}etcd_quota_backend_bytes = 1099511627776\n"),
            "fastblock-mon: monitor.toml:3: etcd_quota_backend_bytes: 1099511627776 is out of range 67108864..=8589934592",
        ),
        (
            format!("{base}watch_history_epochs = 0\n"),
            "fastblock-mon: monitor.toml:3: watch_history_epochs: 0 is out of range 1..=1000000",
        ),
        // Named data_dir (the line above) before.
        (
            format!("{base}port = 4000\nlog_level = \"info\"\nport = 4001\n"),
            "fastblock-mon: monitor.toml:5: port: duplicate key (first set on line 3)",
        ),
    ];
    for (text, expected) in cases {
        let (code, out, err) = check(&text);
        assert_eq!(code, 2, "{text}: {out}");
        assert_eq!(err.lines().count(), 1, "one line expected: {err}");
        assert_eq!(err.trim_end(), expected, "{text}");
    }
}

#[test]
fn missing_config_file_is_reported() {
    let (code, _, err) = run_bin(
        MON,
        &["--conf", "/nonexistent/monitor.toml", "--check-config"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.starts_with("fastblock-mon: /nonexistent/monitor.toml: cannot read:"),
        "{err}"
    );
}
