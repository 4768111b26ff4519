//! `sam local` as users with Docker run it (`sam local invoke --env-vars infra/sam-local/env.json`):
//! the SAM CLI's own code (installed pinned by ./infra/test) resolves each function's environment
//! from template.yaml and the file, and the broker's configuration must accept the result. Docker
//! is not on these machines, so the container itself is not started; the runtime-path test
//! (runtime.rs) runs the same binaries with the same file's variables under cargo lambda.

use std::collections::BTreeMap;

/// Each function's environment as `sam local` would hand it to the container.
fn resolved_by_sam_cli() -> BTreeMap<String, BTreeMap<String, String>> {
    let script = r#"
import json, re, sys
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.local.lambdafn.env_vars import EnvironmentVariables
overrides = json.load(open("infra/sam-local/env.json"))
stacks, _ = SamLocalStackProvider.get_stacks("template.yaml", parameter_overrides={})
out = {}
for fn in SamFunctionProvider(stacks).get_all():
    variables = (fn.environment or {}).get("Variables", {})
    env = EnvironmentVariables(fn.name, fn.handler, variables=variables,
                               override_values=overrides.get(fn.name, {}))
    out[fn.name] = {k: v for k, v in env.resolve().items() if isinstance(v, str)}
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["-c", script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the SAM CLI's resolver (run ./infra/test, which installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("resolved environments")
}

fn env_json() -> BTreeMap<String, BTreeMap<String, String>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/sam-local/env.json"
    ))
    .expect("infra/sam-local/env.json");
    serde_json::from_str(&text).expect("env.json: function -> variables")
}

#[test]
fn sam_local_gives_every_function_the_env_json_variables_and_a_configuration_that_starts() {
    let resolved = resolved_by_sam_cli();
    let file = env_json();

    // One entry per function of the template, by logical id, and no other
    assert_eq!(
        resolved.keys().collect::<Vec<_>>(),
        file.keys().collect::<Vec<_>>(),
        "env.json's functions and template.yaml's"
    );
    for (function, wanted) in &file {
        let env = &resolved[function];
        // Every variable the file sets reaches the function (SAM local drops variables the
        // template does not declare: nothing in the file is unknown)
        for (name, value) in wanted {
            assert_eq!(
                env.get(name),
                Some(value),
                "{function}: {name} from env.json does not reach the function"
            );
        }
        // The emulator endpoint and the table are the file's, not the template's Ref
        assert!(wanted.contains_key("AWS_ENDPOINT_URL"), "{function}");
        assert!(wanted.contains_key("BROKER_TABLE"), "{function}");
        // And the broker starts with it: every required variable there, every value valid
        let config = broker::Config::from_lookup(|k| env.get(k).cloned());
        assert!(config.is_ok(), "{function}: {:?}", config.err());
        assert_eq!(
            config.unwrap().backend,
            broker::config::Backend::Aws,
            "{function}"
        );
    }
}

#[test]
fn a_deployed_stack_declares_no_emulator_variables() {
    // What CloudFormation deploys: EndpointUrl empty, so both If's pick NoValue
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
    for name in ["AWS_ENDPOINT_URL", "BROKER_ALLOW_LOOPBACK_HTTP"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} declared"));
        assert!(
            line.contains("!If [LocalEmulator,") && line.contains("!Ref AWS::NoValue]"),
            "{name} only under the emulator condition: {line}"
        );
    }
    assert!(text.contains("LocalEmulator: !Not [!Equals [!Ref EndpointUrl, \"\"]]"));
}
