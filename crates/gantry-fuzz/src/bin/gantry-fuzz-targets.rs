//! Prints every fuzz target as a tab-separated line for the scripts:
//! `name  reaches_unsafe(yes|no)  paths(comma-separated, the module file first)`.

fn main() {
    for target in gantry_fuzz::targets() {
        let mut paths = vec![target.module];
        paths.extend_from_slice(target.reaches);
        println!(
            "{}\t{}\t{}",
            target.name,
            if target.reaches_unsafe { "yes" } else { "no" },
            paths.join(",")
        );
    }
}
