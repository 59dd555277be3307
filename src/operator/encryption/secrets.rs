//! Writing the keys Secret and the backup Secret of retired keys.

use super::*;

/// Writes the keys Secret: created when absent, else replaced with the `resourceVersion` read
/// (a concurrent writer makes it fail, and the reconcile starts again).
pub(super) async fn write_keys(
    api: &Api<Secret>,
    name: &str,
    found: Option<&Secret>,
    state: &KeyState,
    rendered: &str,
) -> Result<()> {
    let state_json = serde_json::to_vec(state).map_err(|e| Error::Kube {
        action: "encode the key state".into(),
        source: kube::Error::SerdeError(e),
    })?;
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            labels: Some(BTreeMap::from([(MANAGED_BY.0.into(), MANAGED_BY.1.into())])),
            annotations: Some(BTreeMap::from([(
                "kubeplane.io/warning".into(),
                "encryption keys of this cluster's stored objects: deleting this Secret makes them unreadable".into(),
            )])),
            resource_version: found.and_then(|f| f.metadata.resource_version.clone()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (CONFIG_KEY.to_string(), ByteString(rendered.as_bytes().to_vec())),
            (STATE_KEY.to_string(), ByteString(state_json)),
        ])),
        ..Default::default()
    };
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let result = match found {
        None => api.create(&pp, &secret).await,
        Some(_) => {
            secret.metadata.uid = found.and_then(|f| f.metadata.uid.clone());
            api.replace(name, &pp, &secret).await
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::Conflict(
            format!("Secret {NAMESPACE}/{name}"),
            found
                .and_then(|f| f.metadata.resource_version.clone())
                .unwrap_or_default(),
        )),
        Err(e) => Err(kube_err(format!("write Secret {NAMESPACE}/{name}"))(e)),
    }
}

/// Adds retired keys to the backup Secret `<name>-retired` (never removed from it): its
/// `encryption-config.yaml` reads every retired key, for an API server restoring an old etcd
/// snapshot.
pub(super) async fn backup(
    api: &Api<Secret>,
    name: &str,
    resources: &[String],
    retire: &[Key],
) -> Result<()> {
    let backup = format!("{name}{RETIRED_SUFFIX}");
    let found = api
        .get_opt(&backup)
        .await
        .map_err(kube_err(format!("get Secret {NAMESPACE}/{backup}")))?;
    let mut keys: Vec<Key> = found
        .as_ref()
        .and_then(|s| data(s, "retired.json"))
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for k in retire {
        if !keys.iter().any(|x| x.name == k.name) {
            keys.push(k.clone());
        }
    }
    let mut readable = keys.clone();
    readable.push(Key::identity());
    let json = serde_json::to_vec(&keys).map_err(|e| Error::Kube {
        action: "encode retired keys".into(),
        source: kube::Error::SerdeError(e),
    })?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(backup.clone()),
            namespace: Some(NAMESPACE.to_string()),
            labels: Some(BTreeMap::from([(MANAGED_BY.0.into(), MANAGED_BY.1.into())])),
            resource_version: found
                .as_ref()
                .and_then(|f| f.metadata.resource_version.clone()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            ("retired.json".to_string(), ByteString(json)),
            (
                CONFIG_KEY.to_string(),
                ByteString(render_config(resources, &readable).into_bytes()),
            ),
        ])),
        ..Default::default()
    };
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let result = match &found {
        None => api.create(&pp, &secret).await,
        Some(_) => api.replace(&backup, &pp, &secret).await,
    };
    result
        .map(|_| ())
        .map_err(kube_err(format!("write Secret {NAMESPACE}/{backup}")))
}
