//! The `aia-chat` binary: everything lives in the library; this only hands over the arguments.
#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    // SAFETY: first thing in `main`, before this process starts any thread.
    #[allow(unsafe_code)]
    unsafe {
        aia_chat::semantic::pin_rayon_threads()
    };
    aia_chat::cli::main()
}
