//! Least privilege, checked: each function's policy in `template.yaml` grants exactly the AWS
//! actions its code calls (the `AWS_ACTIONS` list kept in each function's lib.rs), on the table or
//! the secret prefix it uses. A new call without a permission, or a permission without a call,
//! fails here.

use std::collections::BTreeSet;

use serde_norway::Value;

fn template() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml"))
        .expect("template.yaml");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

/// Every `Action` (with its `Resource`) under `value`, looking through CloudFormation tags such as
/// `!If`, whose branches are both possible policies.
fn statements(value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Mapping(map) => {
            if let Some(action) = map.get("Action") {
                let resource = map.get("Resource").cloned().unwrap_or(Value::Null);
                let actions: Vec<String> = match action {
                    Value::Sequence(seq) => seq
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_string))
                        .collect(),
                    Value::String(a) => vec![a.clone()],
                    other => panic!("unexpected Action {other:?}"),
                };
                for a in actions {
                    out.push((a, resource.clone()));
                }
            }
            for v in map.values() {
                statements(v, out);
            }
        }
        Value::Sequence(seq) => seq.iter().for_each(|v| statements(v, out)),
        Value::Tagged(tagged) => statements(&tagged.value, out),
        _ => {}
    }
}

fn text_of(resource: &Value) -> String {
    match resource {
        Value::Tagged(t) => format!("{} {}", t.tag, text_of(&t.value)),
        Value::String(s) => s.clone(),
        Value::Sequence(seq) => seq.iter().map(text_of).collect::<Vec<_>>().join(" "),
        other => format!("{other:?}"),
    }
}

/// The function resource built from `binary`.
fn policies_of(template: &Value, binary: &str) -> Vec<(String, Value)> {
    let resources = template["Resources"].as_mapping().expect("Resources");
    let function = resources
        .values()
        .find(|r| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .unwrap_or_else(|| panic!("no function builds {binary}"));
    let mut out = vec![];
    statements(&function["Properties"]["Policies"], &mut out);
    out
}

#[test]
fn each_function_is_granted_exactly_the_actions_its_code_calls() {
    let template = template();
    for (binary, code) in [
        ("broker-initiate", initiate::AWS_ACTIONS),
        ("broker-authorize", authorize::AWS_ACTIONS),
        ("broker-callback", callback::AWS_ACTIONS),
        ("broker-complete", complete::AWS_ACTIONS),
    ] {
        let granted = policies_of(&template, binary);
        let granted_actions: BTreeSet<&str> = granted.iter().map(|(a, _)| a.as_str()).collect();
        let called: BTreeSet<&str> = code.iter().copied().collect();
        assert_eq!(
            granted_actions, called,
            "{binary}: template policy vs AWS_ACTIONS"
        );

        // and on the resources the code uses, never a wildcard
        for (action, resource) in &granted {
            let resource = text_of(resource);
            let expected = match action.split(':').next().unwrap() {
                "dynamodb" => "GetAtt Table.Arn",
                "kms" => "Ref KmsKeyArn",
                _ if action == "secretsmanager:GetSecretValue" => "${SecretPrefix}/apps/*",
                _ => "${SecretPrefix}/connections/*",
            };
            assert!(
                resource.contains(expected),
                "{binary}: {action} on {resource}, expected {expected}"
            );
        }
    }
}

#[test]
fn a_wildcard_action_or_resource_would_be_caught() {
    let broad: Value = serde_norway::from_str(
        "Policies:\n  - Statement:\n      - Effect: Allow\n        Action: ['dynamodb:*']\n        Resource: '*'\n",
    )
    .unwrap();
    let mut out = vec![];
    statements(&broad["Policies"], &mut out);
    assert_eq!(out.len(), 1);
    assert!(!initiate::AWS_ACTIONS.contains(&out[0].0.as_str()));
    assert!(!text_of(&out[0].1).contains("Table.Arn"));
}

#[test]
fn template_keeps_the_promises_the_readme_makes() {
    let t = template();
    let globals = &t["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["LoggingConfig"]["LogFormat"].as_str(), Some("JSON"));
    assert_eq!(
        t["Parameters"]["Architecture"]["Default"].as_str(),
        Some("arm64")
    );

    // Timeouts below API Gateway's 30 s; the steps that redeem codes above the 10 s exchange timeout
    let global_timeout = globals["Timeout"].as_u64().unwrap();
    for r in t["Resources"].as_mapping().unwrap().values() {
        let Some(binary) = r["Metadata"]["BuildProperties"]["Binary"].as_str() else {
            continue;
        };
        assert_eq!(
            r["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda")
        );
        let timeout = r["Properties"]["Timeout"]
            .as_u64()
            .unwrap_or(global_timeout);
        assert!(timeout < 30, "{binary}: {timeout} s");
        if matches!(binary, "broker-callback" | "broker-complete") {
            assert!(timeout > 10, "{binary} exchanges codes: {timeout} s");
        }
    }

    let table = &t["Resources"]["Table"]["Properties"];
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("expires_at")
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["SSESpecification"]["SSEEnabled"].as_bool(),
        Some(true)
    );
    assert!(t["Outputs"]["ApiUrl"].is_mapping() && t["Outputs"]["CallbackUrl"].is_mapping());

    // Every parameter is documented in the README
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    for name in t["Parameters"].as_mapping().unwrap().keys() {
        let name = name.as_str().unwrap();
        assert!(
            readme.contains(&format!("`{name}`")),
            "README documents parameter {name}"
        );
    }
}
