//! Reading Kubernetes objects (as JSON values) in the tests of
//! deploy/kubernetes and of the Helm chart.

use serde_json::Value;

/// Container `name` of a pod spec (init containers included).
pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .into_iter()
        .chain(pod["initContainers"].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod:#}"))
}

/// A container's args (none: empty).
pub fn args(c: &Value) -> Vec<&str> {
    c["args"].as_array().map(|a| a.iter().map(|x| x.as_str().unwrap()).collect()).unwrap_or_default()
}
