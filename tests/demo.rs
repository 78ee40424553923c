//! The README's first command: the demo runs the whole cycle on embedded defaults and proves the
//! restored data equal.

#[test]
fn the_demo_backs_up_restores_and_proves_the_data_equal() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["--json", "-q", "demo"])
        .env_remove("LIFEBOAT_CONFIG")
        .output()
        .expect("run lifeboat demo");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let json_start = text.find('{').expect("a JSON result");
    let result: serde_json::Value =
        serde_json::from_str(text[json_start..].trim_end()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(result["equal"], true, "{text}");
    assert_eq!(result["tables"], 4);
    assert_eq!(result["rows"], 100_200);
    assert!(result["stored_bytes"].as_u64().unwrap() < result["backup_bytes"].as_u64().unwrap());
}
