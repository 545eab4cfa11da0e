fn main() {
    // Embedded migrations are read at compile time; a new folder must rebuild.
    println!("cargo:rerun-if-changed=migrations");
}
