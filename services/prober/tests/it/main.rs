//! Prober integration tests: a real nats-server, the real monitor and prober binaries,
//! and HTTP(S)/TCP servers started by the test. Needs `cargo build -p monitor`.

mod helpers;
mod http;
mod kv;
mod lifecycle;
mod perms;
mod tcp;
mod tls;
