//! The container table: containers and images as a runtime would report them.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;

use super::super::{ContainerRuntime, ContainerSeen};

/// Containers as a runtime would report them. Clones share the table.
#[derive(Clone, Debug, Default)]
pub struct FakeRuntime {
    containers: Arc<Mutex<Vec<ContainerSeen>>>,
    images: Arc<Mutex<FakeImages>>,
}

/// The image store of a [`FakeRuntime`]: what is present, which pulls fail (and why), how long
/// a pull takes, every pull asked for.
#[derive(Clone, Debug, Default)]
pub struct FakeImages {
    /// Images present.
    pub present: std::collections::BTreeSet<String>,
    /// Images whose pull fails, with the runtime's message.
    pub failing: std::collections::BTreeMap<String, String>,
    /// How long a pull takes.
    pub pull_time: Duration,
    /// Every pull asked for, in order.
    pub pulls: Vec<String>,
    /// The user name of the credentials each pull carried (`None`: none), in order.
    pub pull_users: Vec<Option<String>>,
}

impl FakeRuntime {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A table holding `containers`.
    pub fn with(containers: Vec<ContainerSeen>) -> Self {
        let rt = Self::new();
        rt.set(containers);
        rt
    }

    /// Replaces every container.
    pub fn set(&self, containers: Vec<ContainerSeen>) {
        *self.lock() = containers;
    }

    /// Changes the table.
    pub fn update<R>(&self, f: impl FnOnce(&mut Vec<ContainerSeen>) -> R) -> R {
        f(&mut self.lock())
    }

    /// Every container.
    pub fn containers(&self) -> Vec<ContainerSeen> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<ContainerSeen>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the image store.
    pub fn images<R>(&self, f: impl FnOnce(&mut FakeImages) -> R) -> R {
        f(&mut self.images.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) async fn pull(&self, image: &str, user: Option<&str>) -> Result<String, String> {
        let (wait, failing) = self.images(|i| {
            i.pulls.push(image.to_string());
            i.pull_users.push(user.map(str::to_string));
            (i.pull_time, i.failing.get(image).cloned())
        });
        tokio::time::sleep(wait).await;
        if let Some(why) = failing {
            return Err(why);
        }
        self.images(|i| i.present.insert(image.to_string()));
        Ok(format!(
            "sha256:{}",
            crate::render::sha256_hex(image.as_bytes())
        ))
    }
}

impl ContainerRuntime for FakeRuntime {
    fn containers_of_pod<'a>(
        &'a self,
        pod_uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerSeen>, String>> {
        let found = self
            .lock()
            .iter()
            .filter(|c| c.pod_uid == pod_uid)
            .cloned()
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        let present = self.images(|i| i.present.contains(image));
        Box::pin(async move { Ok(present) })
    }

    fn pull_image<'a>(
        &'a self,
        image: &'a str,
        auth: Option<&'a crate::agent::pull_auth::RegistryAuth>,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let user = auth.map(|a| a.username.as_str());
            tokio::time::timeout(timeout, self.pull(image, user))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "did not pull {image} within {} s",
                        timeout.as_secs()
                    ))
                })
        })
    }
}
