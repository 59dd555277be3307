//! The service manager `kubeplane migrate` stops, disables and (on the way back) starts units
//! with: one small interface, `systemctl` behind it on a node, and [`ProcessServices`], a
//! stand-in that really starts and stops a process per unit, for tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A service manager call that failed.
#[derive(Debug, thiserror::Error)]
#[error("{action} {unit}: {reason}")]
pub struct ServiceError {
    /// `start`, `stop`, `disable`, `is-active`.
    pub action: &'static str,
    /// The unit.
    pub unit: String,
    /// Why.
    pub reason: String,
}

/// What `migrate` needs from the service manager.
pub trait ServiceManager: Send + Sync {
    /// Whether the unit runs now.
    fn is_active(&self, unit: &str) -> Result<bool, ServiceError>;
    /// Starts the unit (and waits until the manager says it started).
    fn start(&self, unit: &str) -> Result<(), ServiceError>;
    /// Stops the unit (and waits until its processes are gone).
    fn stop(&self, unit: &str) -> Result<(), ServiceError>;
    /// Keeps the unit from starting at boot; the unit file stays.
    fn disable(&self, unit: &str) -> Result<(), ServiceError>;
}

/// `systemctl` on the node.
#[derive(Clone, Debug)]
pub struct Systemctl {
    /// The program (`systemctl`).
    pub program: PathBuf,
}

impl Default for Systemctl {
    fn default() -> Self {
        Systemctl {
            program: PathBuf::from("systemctl"),
        }
    }
}

impl Systemctl {
    fn run(&self, action: &'static str, unit: &str) -> Result<std::process::Output, ServiceError> {
        Command::new(&self.program)
            .arg(action)
            .arg(unit)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ServiceError {
                action,
                unit: unit.to_string(),
                reason: format!("cannot run {}: {e}", self.program.display()),
            })
    }

    fn ok(&self, action: &'static str, unit: &str) -> Result<(), ServiceError> {
        let out = self.run(action, unit)?;
        if out.status.success() {
            return Ok(());
        }
        Err(ServiceError {
            action,
            unit: unit.to_string(),
            reason: format!(
                "{} {action} {unit} exited with {}: {}",
                self.program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

impl ServiceManager for Systemctl {
    fn is_active(&self, unit: &str) -> Result<bool, ServiceError> {
        // `is-active` exits 0 when active, non-zero otherwise (inactive, failed, unknown).
        Ok(self.run("is-active", unit)?.status.success())
    }
    fn start(&self, unit: &str) -> Result<(), ServiceError> {
        self.ok("start", unit)
    }
    fn stop(&self, unit: &str) -> Result<(), ServiceError> {
        self.ok("stop", unit)
    }
    fn disable(&self, unit: &str) -> Result<(), ServiceError> {
        self.ok("disable", unit)
    }
}

/// One unit of [`ProcessServices`].
struct FakeUnit {
    command: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    enabled: bool,
}

/// A service manager that runs each unit as a child process: `start` spawns the unit's
/// command, `stop` sends SIGTERM and waits for the exit (SIGKILL after 10 s), `disable`
/// records it. Every call is logged with its time, for sequencing tests. Children still
/// running when it is dropped are killed.
#[derive(Default)]
pub struct ProcessServices {
    units: Mutex<BTreeMap<String, FakeUnit>>,
    log: Mutex<Vec<(Instant, String)>>,
    after_stop: Mutex<Option<StopHook>>,
}

/// Called after a unit was stopped (tests inject failures with it).
pub type StopHook = Box<dyn Fn(&str) + Send + Sync>;

impl ProcessServices {
    /// A manager with no units.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a unit (enabled, stopped) that runs `command` with extra environment `env`.
    pub fn add(&self, unit: &str, command: Vec<String>, env: Vec<(String, String)>) {
        let mut units = self.units.lock().unwrap_or_else(|e| e.into_inner());
        units.insert(
            unit.to_string(),
            FakeUnit {
                command,
                env,
                child: None,
                enabled: true,
            },
        );
    }

    /// Calls `hook` with the unit's name after each stop.
    pub fn after_stop(&self, hook: StopHook) {
        *self.after_stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Whether a unit is enabled.
    pub fn is_enabled(&self, unit: &str) -> bool {
        let units = self.units.lock().unwrap_or_else(|e| e.into_inner());
        units.get(unit).is_some_and(|u| u.enabled)
    }

    /// The calls so far: `start UNIT`, `stop UNIT`, `disable UNIT`, with their time.
    pub fn log(&self) -> Vec<(Instant, String)> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, entry: String) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Instant::now(), entry));
    }

    fn with<T>(
        &self,
        action: &'static str,
        unit: &str,
        f: impl FnOnce(&mut FakeUnit) -> Result<T, String>,
    ) -> Result<T, ServiceError> {
        let mut units = self.units.lock().unwrap_or_else(|e| e.into_inner());
        let u = units.get_mut(unit).ok_or_else(|| ServiceError {
            action,
            unit: unit.to_string(),
            reason: "no such unit".into(),
        })?;
        f(u).map_err(|reason| ServiceError {
            action,
            unit: unit.to_string(),
            reason,
        })
    }
}

fn alive(child: &mut Option<Child>) -> bool {
    match child {
        Some(c) => matches!(c.try_wait(), Ok(None)),
        None => false,
    }
}

fn terminate(child: &mut Child) -> Result<(), String> {
    let pid = i32::try_from(child.id()).map_err(|e| e.to_string())?;
    // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                child.kill().map_err(|e| e.to_string())?;
                child.wait().map_err(|e| e.to_string())?;
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

impl ServiceManager for ProcessServices {
    fn is_active(&self, unit: &str) -> Result<bool, ServiceError> {
        self.with("is-active", unit, |u| Ok(alive(&mut u.child)))
    }

    fn start(&self, unit: &str) -> Result<(), ServiceError> {
        self.record(format!("start {unit}"));
        self.with("start", unit, |u| {
            if alive(&mut u.child) {
                return Ok(());
            }
            let (program, args) = u.command.split_first().ok_or("empty command")?;
            let child = Command::new(program)
                .args(args)
                .envs(u.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {program}: {e}"))?;
            u.child = Some(child);
            Ok(())
        })
    }

    fn stop(&self, unit: &str) -> Result<(), ServiceError> {
        self.record(format!("stop {unit}"));
        self.with("stop", unit, |u| match u.child.take() {
            Some(mut c) => match c.try_wait() {
                Ok(None) => terminate(&mut c),
                _ => Ok(()),
            },
            None => Ok(()),
        })?;
        if let Some(hook) = &*self.after_stop.lock().unwrap_or_else(|e| e.into_inner()) {
            hook(unit);
        }
        Ok(())
    }

    fn disable(&self, unit: &str) -> Result<(), ServiceError> {
        self.record(format!("disable {unit}"));
        self.with("disable", unit, |u| {
            u.enabled = false;
            Ok(())
        })
    }
}

impl Drop for ProcessServices {
    fn drop(&mut self) {
        let units = self.units.get_mut().unwrap_or_else(|e| e.into_inner());
        for u in units.values_mut() {
            if let Some(mut c) = u.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_services_start_and_stop_a_real_process() {
        let s = ProcessServices::new();
        s.add("sleeper.service", vec!["sleep".into(), "30".into()], vec![]);
        assert!(!s.is_active("sleeper.service").unwrap());
        s.start("sleeper.service").unwrap();
        assert!(s.is_active("sleeper.service").unwrap());
        s.stop("sleeper.service").unwrap();
        assert!(!s.is_active("sleeper.service").unwrap());
        s.disable("sleeper.service").unwrap();
        assert!(!s.is_enabled("sleeper.service"));
        let log: Vec<String> = s.log().into_iter().map(|(_, e)| e).collect();
        assert_eq!(
            log,
            [
                "start sleeper.service",
                "stop sleeper.service",
                "disable sleeper.service"
            ]
        );
        assert!(s.start("nope.service").is_err());
        s.add("bad.service", vec!["/no/such/program".into()], vec![]);
        let e = s.start("bad.service").unwrap_err();
        assert!(e.to_string().contains("cannot start"), "{e}");
    }

    #[test]
    fn systemctl_reports_a_missing_program() {
        let s = Systemctl {
            program: PathBuf::from("/no/such/systemctl"),
        };
        let e = s.stop("x.service").unwrap_err();
        assert!(
            e.to_string().contains("cannot run /no/such/systemctl"),
            "{e}"
        );
        assert!(s.is_active("x.service").is_err());
        // A program that fails: the exit status is in the message.
        let s = Systemctl {
            program: PathBuf::from("false"),
        };
        assert!(!s.is_active("x.service").unwrap());
        let e = s.start("x.service").unwrap_err();
        assert!(e.to_string().contains("exited with"), "{e}");
    }
}
