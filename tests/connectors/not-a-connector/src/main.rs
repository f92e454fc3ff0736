//! A plain WASI command: the host must refuse it as a connector.

fn main() {
    println!("hello");
}
