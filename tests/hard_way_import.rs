//! `kubeplane import --systemd-unit` on the two hard-way units of tests/fixtures/hard-way/
//! (copied from ../shared/fixtures/hard-way, unchanged): the printed config validates, and
//! `kubeplane render` of it gives each component the same flags as the unit, flag by flag,
//! minus exactly the flags the report says were dropped, plus exactly the ones it says were
//! added. The unit's flags are read here with a deliberately simple reading of these two
//! files (one flag per line), independent of the importer's systemd parser.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use kubeplane::adopt::{Parsed, parse_pod};

const F: &str = "tests/fixtures/hard-way";
const API_UNIT: &str = "tests/fixtures/hard-way/seed-001-apiserver/kube-apiserver.service";
const KCM_UNIT: &str =
    "tests/fixtures/hard-way/seed-000-controller-manager/kube-controller-manager.service";
const KCM_ENV: &str = "/etc/kubernetes/config/kube-controller-manager.conf=tests/fixtures/hard-way/seed-000-controller-manager/kube-controller-manager.conf";

fn kubeplane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubeplane"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("kubeplane runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `--name=value` lines of a fixture, as the component gets them: the line's flag with
/// continuation backslash, indentation (including no-break spaces) and the surrounding shell
/// quotes removed.
fn unit_flags(file: &str) -> Vec<(String, String)> {
    let body = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut out = Vec::new();
    for line in body.lines() {
        let Some(start) = line.find("--") else {
            continue;
        };
        let flag = line[start..]
            .trim_end()
            .trim_end_matches('\\')
            .trim_end()
            .trim_end_matches('"');
        let (name, value) = flag[2..].split_once('=').unwrap();
        out.push((name.to_string(), value.replace('"', "")));
    }
    out
}

/// Lines of the report: `  VERB --name=value …`.
fn report(stderr: &str, verb: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(verb))
        .filter_map(|rest| rest.trim_start().strip_prefix("--"))
        .map(|f| {
            let word = f.split(' ').next().unwrap_or_default();
            let word = word.trim_end_matches(':');
            let (n, v) = word.split_once('=').unwrap_or((word, ""));
            (n.to_string(), v.to_string())
        })
        .collect()
}

fn rendered_flags(dir: &Path, component: &str) -> BTreeMap<String, Vec<String>> {
    let path = dir.join(format!("etc/kubernetes/manifests/{component}.yaml"));
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Ok(Parsed::Pod(pod)) = parse_pod(&yaml) else {
        panic!("{} is not a Pod", path.display())
    };
    let command = pod.spec.unwrap().containers[0].command.clone().unwrap();
    assert_eq!(command[0], component);
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in &command[1..] {
        let (n, v) = w.strip_prefix("--").unwrap().split_once('=').unwrap();
        map.entry(n.to_string()).or_default().push(v.to_string());
    }
    map
}

fn set(v: &str) -> Vec<&str> {
    let mut s: Vec<&str> = v.split(',').collect();
    s.sort();
    s
}

/// Imports, validates, renders; checks every flag.
fn check(component: &str, unit: &str, import_args: &[&str], node: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["import", "--systemd-unit", unit, "--node", node];
    args.extend_from_slice(import_args);
    let o = kubeplane(&args);
    let stderr = text(&o.stderr);
    // Exit 1: the units hold one wrong value each (a service-account key that is the CA's).
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: ") && stderr.contains("fix: "),
        "{stderr}"
    );
    let config = tmp.path().join("config.yaml");
    std::fs::write(&config, &o.stdout).unwrap();
    let cfg = config.to_str().unwrap();

    let v = kubeplane(&["validate", "-f", cfg]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}{}",
        text(&v.stdout),
        text(&v.stderr)
    );

    let out = tmp.path().join("out");
    let r = kubeplane(&[
        "render",
        "-f",
        cfg,
        "--node",
        node,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}{}",
        text(&r.stdout),
        text(&r.stderr)
    );
    let mut rendered = rendered_flags(&out, component);

    let dropped = report(&stderr, "dropped");
    let carried = report(&stderr, "carried");
    let added = report(&stderr, "added");
    let unit = unit_flags(unit_file(unit, import_args));
    assert!(!unit.is_empty());
    for (name, value) in &unit {
        if dropped.iter().any(|(n, v)| n == name && v == value) {
            assert!(
                !rendered.contains_key(name) || added.iter().any(|(n, _)| n == name),
                "--{name} is reported dropped but rendered"
            );
            continue;
        }
        let name = match carried.iter().find(|(n, v)| n == name && v == value) {
            Some(_) => stderr
                .lines()
                .find(|l| l.contains(&format!("carried    --{name}=")))
                .and_then(|l| l.split("kept as --").nth(1))
                .and_then(|r| r.split(',').next())
                .unwrap()
                .to_string(),
            None => name.clone(),
        };
        let got = rendered.remove(&name).unwrap_or_else(|| {
            panic!("{component}: --{name}={value} is neither rendered nor reported dropped")
        });
        if name == "enable-admission-plugins" {
            // kube-apiserver does not depend on the order of this list.
            let added_items: Vec<&str> = added
                .iter()
                .filter(|(n, _)| *n == name)
                .flat_map(|(_, v)| v.split(','))
                .collect();
            let got: Vec<&str> = set(&got[0])
                .into_iter()
                .filter(|i| !added_items.contains(i))
                .collect();
            assert_eq!(got, set(value), "--{name}");
        } else {
            assert_eq!(
                got.as_slice(),
                std::slice::from_ref(value),
                "{component}: --{name}"
            );
        }
    }
    // Whatever else the render writes, the report lists as added, with the same value.
    for (name, values) in &rendered {
        assert!(
            added
                .iter()
                .any(|(n, v)| n == name && *v == values.join(",")),
            "{component}: --{name}={values:?} is rendered but not reported as added: {added:?}"
        );
    }
    assert_eq!(rendered.len(), added.len(), "{added:?}");
    // Every dropped flag is listed with its version and what changes.
    for line in stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("dropped"))
    {
        assert!(line.contains("removed in 1."), "{line}");
    }
    assert!(!dropped.is_empty());
}

fn unit_file<'a>(unit: &'a str, import_args: &[&'a str]) -> &'a str {
    // The controller manager's flags are in its environment file.
    match import_args.iter().find(|a| a.starts_with('/')) {
        Some(m) => m.split_once('=').unwrap().1,
        None => unit,
    }
}

#[test]
fn apiserver_unit_renders_to_its_flags_minus_the_dropped_ones() {
    check("kube-apiserver", API_UNIT, &[], "node-22");
}

#[test]
fn controller_manager_unit_renders_to_its_flags_minus_the_dropped_ones() {
    check(
        "kube-controller-manager",
        KCM_UNIT,
        &["--environment-file", KCM_ENV],
        "node-22",
    );
}

#[test]
fn the_report_accounts_for_mounts_and_the_config_header_for_what_was_left_out() {
    let o = kubeplane(&["import", "--systemd-unit", API_UNIT, "--node", "n1"]);
    let stderr = text(&o.stderr);
    assert!(
        stderr.contains("mount      /data/apps/k8s/kubernetes/logs/kube-apiserver read-write"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mount      /etc/k8s/kubernetes read-only"),
        "{stderr}"
    );
    let stdout = text(&o.stdout);
    assert!(stdout.starts_with("# Imported by `kubeplane import` from systemd units on node n1"));
    assert!(
        stdout.contains("left out --insecure-bind-address (removed in 1.24)"),
        "{stdout}"
    );
    // Without the environment file the controller manager's flags are gone, as on a node
    // without it: a note says so.
    let o = kubeplane(&["import", "--systemd-unit", KCM_UNIT, "--node", "n1"]);
    assert!(text(&o.stderr).contains("kube-controller-manager.conf does not exist"));
}

#[test]
fn error_paths() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["import", "--systemd-unit", "nope.service"],
            "nope.service: no such file",
        ),
        (
            &[
                "import",
                "--systemd-unit",
                KCM_UNIT,
                "--environment-file",
                "x",
            ],
            "NODE_PATH=LOCAL_FILE",
        ),
        (
            &[
                "import",
                "--systemd-unit",
                KCM_UNIT,
                "--environment-file",
                "/a=/no/such",
            ],
            "/no/such: no such file",
        ),
        (
            &["import", "--systemd-unit", API_UNIT, "--manifest-dir", F],
            "cannot be used with",
        ),
        (
            &[
                "import",
                "--manifest-dir",
                F,
                "--kubernetes-version",
                "v1.36.2",
            ],
            "--systemd-unit",
        ),
        (&["import"], "--manifest-dir"),
        (
            &[
                "import",
                "--systemd-unit",
                API_UNIT,
                "--node",
                "n",
                "--kubernetes-version",
                "v1.20.0",
            ],
            "not supported",
        ),
        (&["import", "--systemd-unit", F], "Is a directory"),
    ];
    for (args, want) in cases {
        let o = kubeplane(args);
        let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {all}");
        assert!(all.contains(want), "{args:?}: {all}");
    }
    // A unit systemd would refuse: the error names file and line.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("kube-scheduler.service");
    std::fs::write(
        &bad,
        "[Service]\nExecStart=/usr/bin/kube-scheduler \\\n  --v=\\q\n",
    )
    .unwrap();
    let o = kubeplane(&["import", "--systemd-unit", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("kube-scheduler.service:3") && err.contains("\\q"),
        "{err}"
    );
    // A required environment file that is missing.
    std::fs::write(
        &bad,
        "[Service]\nEnvironmentFile=/no/such/env\nExecStart=/usr/bin/kube-scheduler $ARGS\n",
    )
    .unwrap();
    let o = kubeplane(&["import", "--systemd-unit", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("/no/such/env does not exist"),
        "{}",
        text(&o.stderr)
    );
    // A drop-in beside the unit is read: it replaces ExecStart; a clean unit exits 0.
    let d = tmp.path().join("kube-scheduler.service.d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(
        d.join("10-fix.conf"),
        "[Service]\nExecStart=\nExecStart=/usr/bin/kube-scheduler --kubeconfig=/etc/k/s.conf --v=2\n",
    )
    .unwrap();
    std::fs::write(&bad, "[Service]\nExecStart=/usr/bin/kube-scheduler --old\n").unwrap();
    let o = kubeplane(&[
        "import",
        "--systemd-unit",
        bad.to_str().unwrap(),
        "--node",
        "n",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("/etc/k/s.conf") && !out.contains("old"),
        "{out}"
    );
}

/// A fake `/proc` with a kubelet whose config names `manifest_dir` as its static Pod path.
fn fake_proc(dir: &Path, manifest_dir: &str) -> String {
    let proc_root = dir.join("proc");
    std::fs::create_dir_all(proc_root.join("4242")).unwrap();
    let config = dir.join("kubelet-config.yaml");
    std::fs::write(
        &config,
        format!("kind: KubeletConfiguration\nstaticPodPath: {manifest_dir}\n"),
    )
    .unwrap();
    std::fs::write(
        proc_root.join("4242/cmdline"),
        format!("/usr/bin/kubelet\0--config={}\0", config.display()),
    )
    .unwrap();
    proc_root.display().to_string()
}

#[test]
fn migrate_dry_run_prints_the_steps_and_checks_kubelet() {
    let tmp = tempfile::tempdir().unwrap();
    let o = kubeplane(&["import", "--systemd-unit", API_UNIT, "--node", "node-22"]);
    let config = tmp.path().join("api.yaml");
    std::fs::write(&config, &o.stdout).unwrap();
    let cfg = config.to_str().unwrap();
    // As imported, kube-apiserver refuses anonymous requests, so its probes would fail:
    // migrate refuses the plan, as the import's error said.
    let o = kubeplane(&[
        "migrate",
        "--dry-run",
        "-f",
        cfg,
        "--node",
        "node-22",
        "--systemd-unit",
        API_UNIT,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--anonymous-auth=false"),
        "{}",
        text(&o.stderr)
    );
    // The fix the import suggests: drop the flag.
    let yaml = std::fs::read_to_string(&config).unwrap();
    let fixed = yaml.replace("    - name: anonymous-auth\n      value: \"false\"\n", "");
    assert_ne!(fixed, yaml);
    std::fs::write(&config, fixed).unwrap();
    let manifests = tmp.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let md = manifests.to_str().unwrap();
    let proc_root = fake_proc(tmp.path(), md);
    let base = [
        "migrate",
        "--dry-run",
        "-f",
        cfg,
        "--node",
        "node-22",
        "--systemd-unit",
        API_UNIT,
        "--manifest-dir",
        md,
    ];
    let mut args = base.to_vec();
    args.extend(["--proc-root", &proc_root]);
    let o = kubeplane(&args);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    assert!(
        out.contains(&format!("0. check: kubelet reads static Pods from {md}")),
        "{out}"
    );
    assert!(
        out.contains("1. kube-apiserver (unit kube-apiserver.service"),
        "{out}"
    );
    assert!(
        out.contains("the Pod listens on port 6443 like the unit, so: stop kube-apiserver.service"),
        "{out}"
    );
    assert!(out.contains("https://10.10.10.22:6443/livez"), "{out}");
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert_eq!(std::fs::read_dir(&manifests).unwrap().count(), 0);

    // No kubelet: the dry run says how to turn static Pods on and exits 1; a real run
    // refuses before touching anything (exit 2).
    let empty = tmp.path().join("empty-proc");
    std::fs::create_dir_all(&empty).unwrap();
    let mut args = base.to_vec();
    args.extend(["--proc-root", empty.to_str().unwrap()]);
    let o = kubeplane(&args);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(
        out.contains("0. check FAILS: no kubelet runs") && out.contains("staticPodPath:"),
        "{out}"
    );
    let real: Vec<&str> = args.iter().copied().filter(|a| *a != "--dry-run").collect();
    let o = kubeplane(&real);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("no kubelet runs"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read_dir(&manifests).unwrap().count(), 0);
}

#[test]
fn migrate_error_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "kind: ControlPlaneConfig\n").unwrap();
    let o = kubeplane(&[
        "import",
        "--systemd-unit",
        KCM_UNIT,
        "--node",
        "n",
        "--environment-file",
        KCM_ENV,
    ]);
    let kcm_cfg = tmp.path().join("kcm.yaml");
    std::fs::write(&kcm_cfg, &o.stdout).unwrap();
    let etcd = tmp.path().join("etcd.service");
    std::fs::write(&etcd, "[Service]\nExecStart=/usr/bin/etcd\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["migrate", "--node", "n", "-f", kcm_cfg.to_str().unwrap()],
            "--systemd-unit",
        ),
        (
            vec![
                "migrate",
                "--node",
                "n",
                "-f",
                bad.to_str().unwrap(),
                "--systemd-unit",
                KCM_UNIT,
            ],
            "bad.yaml",
        ),
        (
            vec![
                "migrate",
                "--node",
                "n",
                "-f",
                kcm_cfg.to_str().unwrap(),
                "--systemd-unit",
                etcd.to_str().unwrap(),
            ],
            "not kube-apiserver",
        ),
        // The kube-controller-manager config leaves kube-apiserver alone.
        (
            vec![
                "migrate",
                "--node",
                "n",
                "-f",
                kcm_cfg.to_str().unwrap(),
                "--systemd-unit",
                API_UNIT,
            ],
            "does not manage it",
        ),
    ];
    for (args, want) in cases {
        let o = kubeplane(&args);
        let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {all}");
        assert!(all.contains(want), "{args:?}: {all}");
    }
}
