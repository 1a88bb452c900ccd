//! This machine's name as audit records write it (syslog's HOSTNAME field, the `instance` of a
//! `tenant_forgotten` event): its own module because both the events and the syslog framing
//! name it.

/// HOSTNAME of our messages: the kernel's host name when it is printable ASCII, else `-`.
pub fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name = name.trim();
    if (1..=255).contains(&name.len()) && name.bytes().all(|b| (33..=126).contains(&b)) {
        name.to_owned()
    } else {
        "-".to_owned()
    }
}
