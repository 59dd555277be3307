//! What became of every kept flag ([`Fate`]), and the flags the render adds that the units
//! lacked ([`Added`]).

use super::*;

/// Settles the fate of every kept flag in `reports` (a flag replaced by another keeps its
/// fate); returns the flags `fin`, the final render, adds.
pub(super) fn settle_fates(
    spec: &ControlPlaneConfigSpec,
    fin: &Rendered,
    parsed: &[Parsed],
    reports: &mut [FlagReport],
    node: &NodeFacts,
    extra_api: &[(String, String, String)],
    findings: &mut Vec<Finding>,
) -> Vec<Added> {
    let certs = spec
        .certificates_dir
        .clone()
        .unwrap_or_else(|| defaults::CERTIFICATES_DIR.to_string());
    let spec_json = serde_json::to_value(spec).unwrap_or_default();
    let mut added = Vec::new();
    for p in parsed {
        let c = p.component;
        let settings = render::settings(spec, c);
        let rendered = rendered_flags(fin, c);
        for (name, value, idx) in &p.kept {
            let r = &mut reports[*idx];
            if matches!(r.fate, Fate::Replaced { .. }) {
                continue;
            }
            r.fate = if c == Component::ApiServer && name == "advertise-address" {
                Fate::PerNode {
                    field: format!("spec.nodes[name={}].advertiseAddress", node.node_name),
                }
            } else if let Some(i) = settings.extra_args.iter().position(|a| a.name == *name) {
                Fate::ExtraArg {
                    field: format!("{}.extraArgs[{i}]", field_of(c)),
                    protected: is_protected(c, name),
                }
            } else if let Some(f) = owner(c, name) {
                if field_set(&spec_json, &f) {
                    Fate::Field { field: f }
                } else {
                    Fate::Default {
                        via: Some(format!("{f}, left at its default")),
                    }
                }
            } else if value.starts_with(&format!("{}/", certs.trim_end_matches('/')))
                && spec.certificates_dir.is_some()
            {
                Fate::Default {
                    via: Some("spec.certificatesDir".into()),
                }
            } else {
                Fate::Default { via: None }
            };
            if name == "bind-address" && Some(value) == node.advertise_address.as_ref() {
                findings.push(
                    Finding::warning(format!(
                        "this is the node's own address, and spec.nodes[] has no per-node bind address: kept in extraArgs, so every node would get {value}"
                    ))
                    .at(&r.origin)
                    .flag(c, name, Some(value))
                    .fix("bind to 0.0.0.0 (or ::) in the config before adding a second node"),
                );
            }
        }
        for (name, values) in &rendered {
            let in_unit = p.kept.iter().any(|(n, _, _)| n == name);
            if in_unit {
                // List flags merge with kubeplane's defaults: report items the unit lacks.
                if merge_of(c, name) == Merge::List {
                    let unit_items: Vec<&str> = p
                        .kept
                        .iter()
                        .filter(|(n, _, _)| n == name)
                        .flat_map(|(_, v, _)| split_list(v).collect::<Vec<_>>())
                        .collect();
                    let extra: Vec<&str> = values
                        .iter()
                        .flat_map(|v| split_list(v))
                        .filter(|i| !unit_items.contains(i))
                        .collect();
                    if !extra.is_empty() {
                        added.push(Added {
                            component: c,
                            name: name.clone(),
                            value: extra.join(","),
                            reason: format!(
                                "kubeplane merges --{name} with kubeadm's default list; to keep an item off, list it in disable-admission-plugins"
                            ),
                        });
                    }
                }
                continue;
            }
            let reason = match extra_api.iter().find(|(n, _, _)| n == name) {
                Some((_, _, why)) => why.clone(),
                None => added_reason(c, name),
            };
            added.push(Added {
                component: c,
                name: name.clone(),
                value: values.join(","),
                reason,
            });
        }
    }
    added
}
