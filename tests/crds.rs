//! `crds/` holds exactly what `kubeplane crd` prints; regenerate with
//! `cargo run -- crd > crds/kubeplane.io.yaml` when the types change.

#[test]
fn crds_dir_is_current() {
    let path = format!("{}/crds/kubeplane.io.yaml", env!("CARGO_MANIFEST_DIR"));
    let on_disk = std::fs::read_to_string(&path).expect("crds/kubeplane.io.yaml exists");
    let generated = kubeplane::cli::crd_yaml().expect("CRDs serialize");
    assert!(
        on_disk == generated,
        "crds/kubeplane.io.yaml is stale: run `cargo run -- crd > crds/kubeplane.io.yaml`"
    );
}

#[test]
fn crd_command_prints_both_crds_with_names_columns_and_status() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubeplane"))
        .arg("crd")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    assert_eq!(docs.len(), 2);
    let find = |name: &str| {
        docs.iter()
            .find(|d| d["metadata"]["name"] == name)
            .expect(name)
    };
    let cpc = find("controlplaneconfigs.kubeplane.io");
    let cpn = find("controlplanenodes.kubeplane.io");
    for (crd, short, cols) in [
        (
            cpc,
            "cpc",
            vec![
                "Version",
                "Revision",
                "Updated",
                "Ready",
                "Encryption",
                "Key",
                "Age",
            ],
        ),
        (cpn, "cpn", vec!["Revision", "Applied", "Phase", "Age"]),
    ] {
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(crd["spec"]["group"], "kubeplane.io");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], short);
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        assert!(v["subresources"]["status"].is_object());
        let names: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, cols);
    }
}

/// Every field of the spec carries a description, so `kubectl explain` explains it.
#[test]
fn every_field_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                if sub.get("description").is_none()
                    && !matches!(name.as_str(), "metadata" | "apiVersion" | "kind")
                {
                    missing.push(p.clone());
                }
                walk(&p, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in kubeplane::api::crds() {
        let v = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        walk(&crd.spec.names.kind, &v["openAPIV3Schema"], &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}
