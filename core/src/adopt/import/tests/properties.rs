use super::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_files_never_panic(
        texts in proptest::collection::vec(".{0,300}", 1..4),
        names in proptest::collection::vec("[a-z.-]{1,12}", 4),
    ) {
        let files: Vec<ManifestFile> = texts
            .iter()
            .zip(&names)
            .map(|(t, n)| file(n, t))
            .collect();
        let _ = run(&files);
    }

    #[test]
    fn arbitrary_command_lines_never_panic_and_exact_means_reproduced(
        words in proptest::collection::vec(
            prop_oneof![
                "--[a-z-]{1,12}=[a-zA-Z0-9/.,:=-]{0,12}",
                "--[a-z-]{1,12}",
                "[a-zA-Z0-9/.=-]{0,8}",
                Just("--".to_string()),
            ],
            0..8,
        )
    ) {
        let mut list = String::new();
        for w in &words {
            list.push_str(&format!("    - {}\n", serde_json::to_string(w).unwrap()));
        }
        let text = SCHED.replace("    - --leader-elect=true\n", &format!("    - --leader-elect=true\n{list}"));
        let files = [file("kube-scheduler.yaml", &text)];
        if let Ok(i) = run(&files) && i.is_exact() {
            let node = i.node.clone();
            let r = render::render(&RenderInput { spec: &i.config.spec, node: &node, encryption_config_sha256: None }).unwrap();
            let Parsed::Pod(disk) = parse_pod(&text).unwrap() else { panic!() };
            prop_assert!(equivalent(&disk, &r.pods[0].pod));
        }
    }

    #[test]
    fn extra_scheduler_flags_in_any_order_import_exactly(
        picked in proptest::sample::subsequence(
            vec![
                ("v", "4"),
                ("profiling", "false"),
                ("leader-elect-lease-duration", "30s"),
                ("leader-elect-renew-deadline", "20s"),
                ("kube-api-qps", "100"),
                ("feature-gates", "A=true,B=false"),
            ],
            0..6,
        ),
        shuffle_seed in any::<u64>(),
    ) {
        let mut picked = picked;
        // A deterministic shuffle from the seed.
        let n = picked.len();
        for k in 0..n {
            let j = (shuffle_seed.rotate_left(k as u32) as usize) % n;
            picked.swap(k, j);
        }
        let list: String = picked.iter().map(|(n, v)| format!("    - --{n}={v}\n")).collect();
        let text = SCHED.replace("    - --bind-address=127.0.0.1\n", &format!("{list}    - --bind-address=127.0.0.1\n"));
        let i = run(&[file("kube-scheduler.yaml", &text)]).unwrap();
        prop_assert!(i.is_exact(), "{:?}", i.lossy);
        let got = extra_args(&i, Component::Scheduler);
        let want: Vec<(String, String)> = picked.iter().map(|(n, v)| arg(n, v)).collect();
        prop_assert_eq!(got, want);
    }
}
