//! `codegen`: writes the dashboard's TypeScript wire types and the JSON Schemas from
//! `vitals-protocol`. `codegen --check` writes nothing and exits 1 when a committed file
//! is stale (scripts/test.sh runs it), `--root DIR` works on another checkout.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: codegen [--check] [--root DIR]\n\
  writes frontend/src/lib/generated/protocol.ts and docs/schema/*.json from services/protocol;\n\
  --check only compares and exits 1 when they are stale";

fn main() -> ExitCode {
    let mut check = false;
    let mut root: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--root" => match args.next() {
                Some(dir) => root = Some(PathBuf::from(dir)),
                None => return usage("--root needs a directory"),
            },
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    let root = root.unwrap_or_else(codegen::workspace_root);
    let files = codegen::generate();
    let result = if check {
        codegen::check(&root, &files)
    } else {
        codegen::write(&root, &files)
    };
    match result {
        Err(e) => {
            eprintln!("codegen: {e} (under {})", root.display());
            ExitCode::from(2)
        }
        Ok(stale) if check && !stale.is_empty() => {
            eprintln!("{}", codegen::stale_message(&stale));
            ExitCode::FAILURE
        }
        Ok(stale) => {
            if !check {
                for s in &stale {
                    eprintln!("codegen: updated: {s}");
                }
            }
            eprintln!(
                "codegen: {} generated files {}",
                files.len(),
                if check || stale.is_empty() {
                    "are current"
                } else {
                    "written"
                }
            );
            ExitCode::SUCCESS
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("codegen: {problem}\n{USAGE}");
    ExitCode::from(2)
}
