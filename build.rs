// sqlx's `migrate!` embeds migrations at compile time but does not tell cargo to watch the folder:
// without this, a new migration file could be left out of an incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
