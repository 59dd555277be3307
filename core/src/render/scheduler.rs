//! kube-scheduler: kubeadm's default flags ([`defaults::SCHEDULER_FLAGS`]) and its kubeconfig
//! mounted, probed on its bind address.

use super::args::combine;
use super::pod::Mount;
use super::{Context, Plan, defaults};
use crate::api::{Component, HostPathType};

impl Context<'_> {
    pub(super) fn scheduler(&self) -> Plan {
        let component = Component::Scheduler;
        let flags = self.default_flags(component, None);
        let mounts = vec![Mount::same_path(
            "kubeconfig",
            &self.kubeconfig(component),
            true,
            HostPathType::FileOrCreate,
        )];
        let flags = combine(component, flags, self.settings(component).extra_args);
        self.local_plan(
            component,
            flags,
            mounts,
            defaults::SCHEDULER_PORT,
            "/livez",
            Some("/readyz"),
        )
    }
}
