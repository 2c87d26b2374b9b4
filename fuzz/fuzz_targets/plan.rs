//! The response plan as uploaded (`PUT /plan` with a YAML body, `firebreak plan import`):
//! YAML to `firebreak_domain::plan::Plan` through `serde_path_to_error` as the server does
//! (after its nesting check, `playbook::check_yaml_nesting`),
//! then `Plan::problems` and every classification rule compiled as CEL
//! (`firebreak_app::expr::Condition::compile`), as `App::save_plan` checks it. A JSON body
//! (first byte `{`) goes through `serde_json` as the API's JSON route does.
#![no_main]

use firebreak_app::expr::Condition;
use firebreak_domain::plan::{Plan, PlanEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let plan: Plan = if text.starts_with('{') {
        match serde_json::from_str(text) {
            Ok(p) => p,
            Err(_) => return,
        }
    } else {
        // as the server's `parse_plan` and `firebreak plan import` do first
        if firebreak_app::playbook::check_yaml_nesting(text).is_err() {
            return;
        }
        let de = yaml_serde::Deserializer::from_str(text);
        match serde_path_to_error::deserialize(de) {
            Ok(p) => p,
            Err(e) => {
                let _ = (e.path().to_string(), e.inner().to_string());
                return;
            }
        }
    };
    let _ = plan.problems(&|u| u == "alice");
    let _ = plan.default_war_room();
    let _ = plan.protocols_on(PlanEvent::Escalation).count();
    for rule in &plan.intake.rules {
        let _ = Condition::compile(&rule.when);
    }
    // what the server stores and the admin page shows
    let _ = serde_json::to_string(&plan);
    let _ = yaml_serde::to_string(&plan);
});
