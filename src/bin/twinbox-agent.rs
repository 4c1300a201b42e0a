//! The guest agent binary: PID 1 inside a twinbox microVM (see `twinbox::guest::agent`).

fn main() {
    twinbox::guest::agent::main();
}
