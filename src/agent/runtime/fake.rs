//! Test doubles for [`super`]: a CRI v1 `RuntimeService` server on a Unix socket and a fake
//! kubelet. Only with `cfg(test)` or the `testkit` feature. (Work in progress.)
