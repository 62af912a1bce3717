/// A name no other test (or earlier run) uses: of a database, a topic, a consumer group.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Where [`free_port`] looks: below Linux's ephemeral range (32768-60999), which the kernel hands out as the local
/// port of every outgoing connection. A port picked from that range (what binding port 0 gives) can be taken by any
/// connection to PostgreSQL or the broker before the service started on it binds it: a process fleet then failed
/// with "Address already in use" now and then.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port nobody listens on right now, outside the ephemeral range. Each test process walks the range from its own
/// starting point (from its pid), so parallel test processes rarely try the same port, and the bind check skips
/// the ones in use.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        // 13 and the span have no common factor: the walk visits every port once.
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let offset = u16::try_from((start + step.wrapping_mul(13)) % span).unwrap();
        let port = TEST_PORTS.start + offset;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}
