//! The guest agent (PID 1 in a twinbox microVM). Built in the vm issue.

fn main() {
    eprintln!("twinbox-agent: not built yet");
    std::process::exit(1);
}
