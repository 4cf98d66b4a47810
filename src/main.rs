//! The `raftkv` server binary.

fn main() {
    eprintln!("usage: raftkv -id N -addr HOST:PORT -peers A,B,C -data DIR");
    eprintln!("raftkv: the TCP server is not built yet; the library and its tests are.");
    std::process::exit(2);
}
