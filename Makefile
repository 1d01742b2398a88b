# Vitals: the commands a person types.
.PHONY: up down status stop start restart logs test lint fmt build clean-state bench bench-quick soak compare

up:            ## build and start the native stack (nats, monitor, gateway, 4 simulators, prober, agent, notifier, dashboard)
	scripts/stack.sh up
down:          ## stop everything `up` started
	scripts/stack.sh down
status:
	scripts/stack.sh status
stop:          ## stop one part: make stop S=billing   (like docker compose stop billing)
	scripts/stack.sh stop $(S)
start:         ## start one part: make start S=billing
	scripts/stack.sh start $(S)
restart:
	scripts/stack.sh restart $(S)
logs:
	scripts/stack.sh logs $(S)

test:          ## every test; installs nats-server when missing
	scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build --release --bins

clean-state:   ## forget JetStream state (KV, history) of the native stack
	rm -rf .run/jetstream

bench:         ## full benchmark (~12 minutes, defaults, open loop under 10k services), release; writes target/bench/results.json + latency.svg
	scripts/bench.sh
bench-quick:   ## the same measurements at small sizes (under a minute; fails if an invariant does not hold)
	scripts/bench.sh --quick
soak:          ## chaos soak (minutes; not in CI): make soak MINUTES=5
	NATS_SERVER_BIN="$$(scripts/ensure-nats.sh)" cargo run --release --quiet -p bench --bin soak -- --minutes $(or $(MINUTES),5)
compare:       ## side by side with Prometheus + blackbox exporter + Alertmanager: make compare N=20
	scripts/compare.sh $(if $(N),--kills $(N))
