//! kube-controller-manager: kubeadm's default flags ([`defaults::CONTROLLER_MANAGER_FLAGS`]),
//! its kubeconfig and the CA directories mounted, probed on its bind address.

use super::args::{combine, last_value};
use super::pod::Mount;
use super::{Context, Plan, defaults};
use crate::api::{Component, HostPathType};

impl Context<'_> {
    pub(super) fn controller_manager(&self) -> Plan {
        let component = Component::ControllerManager;
        let flags = self.default_flags(component, None);
        let mut mounts = self.ca_mounts();
        mounts.push(Mount::same_path(
            "kubeconfig",
            &self.kubeconfig(component),
            true,
            HostPathType::FileOrCreate,
        ));
        let flags = combine(component, flags, self.settings(component).extra_args);
        // A FlexVolume plugin directory given by flag is mounted read-write, as kubeadm does.
        if let Some(dir) = last_value(&flags, "flex-volume-plugin-dir") {
            mounts.push(Mount::same_path(
                "flexvolume-dir",
                dir,
                false,
                HostPathType::DirectoryOrCreate,
            ));
        }
        self.local_plan(
            component,
            flags,
            mounts,
            defaults::CONTROLLER_MANAGER_PORT,
            "/healthz",
            None,
        )
    }
}
