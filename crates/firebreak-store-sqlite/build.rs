#![forbid(unsafe_code)]

// sqlx::migrate! embeds the migrations folder at compile time; without this a new migration
// file would not be seen until the crate is rebuilt for another reason.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
