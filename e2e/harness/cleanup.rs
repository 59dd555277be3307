//! Undoing a scenario.

use super::*;

impl Cleanup {
    /// Undoes the scenario; returns the problems met (empty when everything was restored).
    pub(super) fn run(&mut self) -> Vec<String> {
        if self.done {
            return Vec::new();
        }
        self.done = true;
        let mut problems = Vec::new();
        // The agent first: it would heal the files about to be restored.
        for p in self.procs.iter_mut().rev() {
            p.stop();
        }
        // The manifests first: a broken kube-apiserver left on disk takes the API (and every
        // deletion below) with it.
        match self.backup.restore(&self.manifest_dir) {
            Ok(lines) => {
                for l in lines {
                    eprintln!("cleanup: {l}");
                }
            }
            Err(e) => problems.push(format!("restoring {}: {e}", self.manifest_dir.display())),
        }
        if let Err(e) = wait_api(&self.kubectl, self.timeout) {
            problems.push(e);
        }
        let deletions: [&[&str]; 3] = [
            &[
                "delete",
                "controlplaneconfig",
                &self.config,
                "--ignore-not-found",
                "--timeout=60s",
            ],
            &[
                "delete",
                "controlplanenode",
                "-l",
                &format!("{CONFIG_LABEL}={}", self.config),
                "--ignore-not-found",
                "--timeout=60s",
            ],
            &[
                "-n",
                "kube-system",
                "delete",
                "lease",
                &self.lease,
                "--ignore-not-found",
            ],
        ];
        for args in deletions {
            if let Err(e) = self.kubectl.run(args, None) {
                problems.push(e);
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.state_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("remove {}: {e}", self.state_dir.display()));
        }
        // The control plane as found: every baseline mirror pod back with its hash, Ready.
        let deadline = Instant::now() + self.pods_timeout;
        for (pod, hash) in &self.baseline {
            loop {
                let seen = self.kubectl.run(
                    &["-n", "kube-system", "get", "pod", pod, "-o", "json"],
                    None,
                );
                let last = match seen.map(|s| serde_json::from_str::<Pod>(&s)) {
                    Ok(Ok(p)) if pod_hash(&p) == Some(hash.as_str()) && pod_ready(&p) => break,
                    Ok(Ok(p)) => format!(
                        "hash {:?}, ready {}",
                        pod_hash(&p).unwrap_or("<none>"),
                        pod_ready(&p)
                    ),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e,
                };
                if Instant::now() > deadline {
                    problems.push(format!(
                        "mirror pod kube-system/{pod} did not come back with config hash {hash} and Ready after the manifests were restored (last seen: {last})"
                    ));
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        problems
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if std::thread::panicking() {
            for p in &self.procs {
                eprintln!(
                    "----- last lines of the {} log ({}):\n{}",
                    p.name,
                    p.log.display(),
                    tail(&p.log, 60)
                );
            }
        }
        for p in self.run() {
            eprintln!("cleanup problem: {p}");
        }
    }
}
